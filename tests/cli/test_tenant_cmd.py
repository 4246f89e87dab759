"""`corral up --secure` and `corral tenant` / `corral secure`, run as real processes against a real
secure deployment: credentials printed, taken by `--creds`, TLS with a throw-away CA."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from actors.embedded import free_port, nats_server_binary
from cli.up import Deployment, UpConfig
from protocol import Client, ConnectionLost, codes, connect_nats

KEYS = {"nats_url", "tenant", "prefix", "subject_prefix", "inbox_prefix", "user", "password", "creds_file", "role"}


async def corral(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def _config(tmp_path: Path, **fields: object) -> UpConfig:
    return UpConfig(data_dir=str(tmp_path / "corral"), nats_port=free_port(), backend="local", warm_pool=0,
                    audit=False, secure=True, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def secure_up(tmp_path):
    async with Deployment(_config(tmp_path)) as deployment:
        yield deployment


async def test_tenant_add_prints_credentials_that_the_cli_takes_at_once(secure_up):
    data_dir = secure_up.config.data_dir
    code, out, err = await corral("tenant", "add", "acme", "--data-dir", data_dir)
    assert code == 0, err
    creds = json.loads(out)  # one JSON object, the whole of stdout
    assert set(creds) == KEYS
    assert (creds["tenant"], creds["role"], creds["subject_prefix"]) == ("acme", "client", "corral.t.acme")
    assert creds["nats_url"] == secure_up.url
    assert json.loads(Path(creds["creds_file"]).read_text()) == creds
    code, out, err = await corral("exec", "--creds", creds["creds_file"], "--", "echo hello from acme")
    assert (code, out) == (0, "hello from acme\n"), err
    code, out, err = await corral("session", "create", env={"CORRAL_NATS_CREDS": creds["creds_file"]})
    sid = out.strip()
    async with await Client.connect(creds=secure_up.secure.creds_path("admin")) as admin:
        assert (await admin.get_session(sid)).tenant == "acme"
    code, out, _ = await corral("session", "list", "--json", "--creds", creds["creds_file"])
    assert [s["session_id"] for s in json.loads(out)] == [sid]
    code, _, err = await corral("workers", "--creds", creds["creds_file"])
    assert code != 0 and "not_permitted" in err


async def test_tenant_list_remove_and_an_approver(secure_up):
    data_dir = secure_up.config.data_dir
    assert (await corral("tenant", "add", "acme", "--data-dir", data_dir))[0] == 0
    code, out, _ = await corral("tenant", "add", "acme", "--role", "approver", "--data-dir", data_dir)
    assert code == 0 and json.loads(out)["user"] == "acme.approver"
    code, out, _ = await corral("tenant", "list", "--data-dir", data_dir)
    assert json.loads(out) == {"acme": ["client", "approver"]}
    code, out, _ = await corral("tenant", "remove", "acme", "--data-dir", data_dir)
    assert json.loads(out)["removed"] == ["acme.client", "acme.approver"]
    code, _, err = await corral("exec", "--creds", str(secure_up.secure.creds_path("admin")), "--", "true")
    assert code == 0, err


async def test_bad_tenant_input_is_a_clear_error(secure_up, tmp_path):
    code, _, err = await corral("tenant", "add", "Not.A.Name", "--data-dir", secure_up.config.data_dir)
    assert code == 1 and "invalid_argument" in err and "tenant name" in err
    code, _, err = await corral("tenant", "add", "acme", "--data-dir", str(tmp_path / "nowhere"))
    assert code == 1 and "invalid_argument" in err and "corral up --secure" in err
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    code, _, err = await corral("session", "list", "--creds", str(junk))
    assert code == 2 and "not a corral credentials file" in err


async def test_without_credentials_a_secure_deployment_lets_no_one_in(secure_up):
    with pytest.raises(ConnectionLost) as info:
        await connect_nats(secure_up.url, name="anonymous", first_attempts=0, allow_reconnect=False)
    assert info.value.code == codes.WORKER_UNAVAILABLE and "Authorization" in info.value.message


# ---------------------------------------------------------------------------------------- TLS
@pytest.fixture
def tls_files(tmp_path):
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    d = tmp_path / "tls"
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=corral test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    return d / "server.pem", d / "server.key", d / "ca.pem"


async def test_tls_clients_with_the_ca_connect_and_plaintext_is_refused(tmp_path, tls_files):
    cert, key, ca = tls_files
    async with Deployment(_config(tmp_path, tls_cert=str(cert), tls_key=str(key), tls_ca=str(ca))) as up:
        assert up.url.startswith("tls://")  # the controller and the worker are in already, over TLS
        creds = up.secure.add_tenant("acme")
        assert creds.ca_file == str(ca) and creds.nats_url == up.url
        await up.secure.reload(probe=creds)
        async with await Client.connect(creds=creds) as client, await client.create_session() as session:
            assert (await session.cmd("echo over tls")).content == "over tls\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", up.secure.load().port)
        try:
            info = await reader.readline()
            assert b'"tls_required":true' in info
            writer.write(f'CONNECT {{"user":"acme.client","pass":"{creds.password}"}}\r\nPING\r\n'.encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(1000), 10)
            assert b"PONG" not in answer  # no plaintext session: the server wants a TLS handshake or hangs up
        finally:
            writer.close()


def test_secure_init_writes_a_configuration_nats_server_accepts(tmp_path):
    data_dir = str(tmp_path / "compose")
    out = subprocess.run([sys.executable, "-m", "cli", "secure", "init", "--data-dir", data_dir, "--host", "nats"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    made = json.loads(out.stdout)
    assert made["nats_url"] == "nats://nats:4222" and set(made["creds"]) == {"admin", "controller", "worker", "observer"}
    check = subprocess.run([nats_server_binary(), "-t", "-c", made["config_file"]], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.timeout(180)
async def test_bench_secure_times_the_open_and_the_secure_deployment_in_one_run():
    code, out, err = await corral("bench", "--secure", "--backend", "local", "--actions", "20", "--json", timeout=170)
    assert code == 0, err
    rows = json.loads(out)["deployments"]
    assert set(rows) == {"open", "secure (tenant client)", "secure + TLS (tenant client)"}
    assert all(r["n"] == 20 and r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] for r in rows.values())
