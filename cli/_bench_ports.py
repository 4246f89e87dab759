"""What a forwarded port costs: the same keep-alive HTTP GET loop inside the sandbox and through ``expose``.

``await forward_overhead("local")`` (or ``"docker"``, ``"bubblewrap"``) starts a private broker and
deployment, a small HTTP/1.1 file server on the sandbox's loopback, and runs one client loop
(``http.client``, one keep-alive connection, ``requests`` GETs of a small file after a warm-up)
twice: inside the sandbox against ``127.0.0.1:<port>``, and on the host against the forwarded
port. Returns p50/p90 in ms of both and the p50 difference.

    PYTHONPATH=. .venv/bin/python -c 'import asyncio; from cli._bench_ports import forward_overhead as f; print(asyncio.run(f("docker")))'
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile

SERVER = """
import http.server as h, sys
h.SimpleHTTPRequestHandler.protocol_version = "HTTP/1.1"
h.SimpleHTTPRequestHandler.disable_nagle_algorithm = True  # headers and body are two sends
h.SimpleHTTPRequestHandler.log_message = lambda *a: None
h.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), h.SimpleHTTPRequestHandler).serve_forever()
"""

CLIENT = """
import http.client, json, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=30)
times = []
for i in range(n + 20):
    t = time.perf_counter()
    conn.request("GET", "/small.txt")
    body = conn.getresponse().read()
    assert body == b"hello\\n", body
    if i >= 20:
        times.append((time.perf_counter() - t) * 1000)
times.sort()
print(json.dumps({"p50": times[len(times) // 2], "p90": times[int(len(times) * 0.9)]}))
"""


async def forward_overhead(backend: str = "local", *, requests: int = 200) -> dict[str, float]:
    """p50/p90 (ms) of a small keep-alive GET inside the sandbox vs through its forwarded port."""
    from actors.embedded import EmbeddedNats
    from protocol import Client

    from .up import Deployment, UpConfig

    with tempfile.TemporaryDirectory(prefix="corral-bench-ports-") as tmp:
        async with EmbeddedNats(f"{tmp}/nats") as nats:
            config = UpConfig(nats_url=nats.url, data_dir=f"{tmp}/corral", backend=backend, audit=False, warm_pool=0)
            async with Deployment(config) as deployment, await Client.connect(deployment.url) as client:
                async with await client.create_session() as session:
                    return await _measure(session, requests)


async def _measure(session, requests: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    port = _free_port()
    await session.write_file("site/small.txt", "hello\n")
    await session.write_file("site/server.py", SERVER)
    await session.write_file("client.py", CLIENT)
    await session.cmd(f"(cd site && exec python3 server.py {port}) </dev/null >/dev/null 2>&1 &")
    ready = await session.cmd(
        "python3 -c \"import socket, time\nfor _ in range(200):\n try: socket.create_connection(('127.0.0.1', %d)).close(); break\n"
        " except OSError: time.sleep(0.05)\"" % port)
    assert ready.exit_code == 0, ready
    inside = await session.cmd(f"python3 client.py 127.0.0.1 {port} {requests}", timeout_s=300)
    assert inside.exit_code == 0, inside
    info = await session.expose(port)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, info.host, str(info.host_port), str(requests),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    there, here = json.loads(inside.content), json.loads(out)
    return {"inside_p50_ms": round(there["p50"], 3), "inside_p90_ms": round(there["p90"], 3),
            "forwarded_p50_ms": round(here["p50"], 3), "forwarded_p90_ms": round(here["p90"], 3),
            "overhead_p50_ms": round(here["p50"] - there["p50"], 3)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
