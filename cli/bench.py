"""``corral bench``: numbers, not guesses.

Measures, against a running corral (or one it starts itself with ``--embedded``):
  * floors: a bare NATS request/reply, a JetStream publish to its ack (what confirming a final
    observation costs), and spawning ``bash -c 'echo hi'``;
  * session create -> ready (through the controller, a real sandbox each time);
  * ``echo hi`` round trip, publish to final observation, sequentially and from several
    sessions at once (actions per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, AsyncIterator

import msgspec

from protocol import Client, CmdOutput, CmdRun, IPythonOutput, new_id


class BenchConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str
    actions: int = 1000
    sessions: int = 20
    parallel: int = 4
    backend: str | None = None
    as_json: bool = False
    embedded: bool = False
    workers: int = 1
    """With ``embedded``: how many workers the private deployment runs."""
    density: int = 0
    """Also start this many idle sandboxes at once and report the executor's RSS in each."""


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)
    return {"n": len(ordered), "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


async def _nats_floor(client: Client, n: int) -> dict[str, float]:
    nc = client.nats
    subject = "_bench." + new_id()

    async def echo(msg):  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    sub = await nc.subscribe(subject, cb=echo)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await nc.request(subject, b"x", timeout=5)
        samples.append(time.perf_counter() - t)
    await sub.unsubscribe()
    return _ms(samples)


async def _js_publish_floor(client: Client, n: int) -> dict[str, float]:
    """A JetStream publish awaited to its ack, into a throw-away file stream: what confirming one
    final observation costs (the worker pipelines them, so an action waits for less than this)."""
    js = client.nats.jetstream()
    name = "bench_" + new_id().replace("-", "")[:16]
    await js.add_stream(name=name, subjects=[f"_bench.{name}"], storage="file")
    try:
        samples = []
        for i in range(n):
            t = time.perf_counter()
            await js.publish(f"_bench.{name}", b"x" * 200, headers={"Nats-Msg-Id": f"{name}-{i}"})
            samples.append(time.perf_counter() - t)
    finally:
        await js.delete_stream(name)
    return _ms(samples)


async def _spawn_floor(n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("bash", "-c", "echo hi", stdout=asyncio.subprocess.PIPE)
        await proc.communicate()
        samples.append(time.perf_counter() - t)
    return _ms(samples)


async def _creates_warm(client: Client, n: int, spec: dict[str, str]) -> dict[str, float]:
    """One create at a time, after a pause that lets the worker refill its warm pool."""
    samples = []
    for _ in range(n):
        await asyncio.sleep(0.5)
        t = time.perf_counter()
        session = await client.create_session(**spec)
        elapsed = time.perf_counter() - t
        if session.info.warm:
            samples.append(elapsed)
        await session.close()
    return _ms(samples or [float("nan")])


async def _creates_cold(client: Client, n: int, spec: dict[str, str]) -> dict[str, float]:
    """Back-to-back creates with no pause: once the warm pool is empty, each one is a cold start."""
    samples, sessions = [], []
    try:
        while len(samples) < n and len(sessions) < n + 16:
            t = time.perf_counter()
            session = await client.create_session(**spec)
            elapsed = time.perf_counter() - t
            sessions.append(session)
            if not session.info.warm:
                samples.append(elapsed)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return _ms(samples or [float("nan")])


async def _round_trips(session, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = await session.run(CmdRun(id=new_id(), command="echo hi"))
        samples.append(time.perf_counter() - t)
        if not isinstance(out, CmdOutput) or out.content != "hi\n":
            raise RuntimeError(f"unexpected answer to echo hi: {out!r}")
    return samples


def _masking_floor(n: int = 20_000) -> dict[str, float]:
    """What masking one secret adds to publishing a 4 KB ``cmd_output`` (in the worker, per answer),
    in microseconds; a session without secrets skips it (0)."""
    from actors.secrets import Masker

    value = "Xq7hT2pLm9Zr4Wk8Bn3Vc6Ys"
    masker = Masker.of({"API_TOKEN": value})
    assert masker is not None
    body = ("lorem ipsum dolor sit amet " * 160)[:4096]
    plain = CmdOutput(id=new_id(), cause=new_id(), session_id="s" + new_id(), content=body, working_dir="/workspace", pid=1)
    echoed = msgspec.structs.replace(plain, content=body[:2048] + value + body[2048:])

    def per(fn: Any) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return round((time.perf_counter() - t) / n * 1e6, 2)
    return {"cmd_output_4k_us": per(lambda: masker.mask(plain)), "cmd_output_4k_echoed_us": per(lambda: masker.mask(echoed)),
            "chunk_4k_us": per(lambda: masker.stream().feed(body))}


async def run_bench(config: BenchConfig) -> dict[str, object]:
    async with _maybe_embedded(config) as url:
        async with await Client.connect(url) as client:
            spec = {"backend": config.backend} if config.backend else {}
            results: dict[str, object] = {"nats_url": url, "backend": config.backend or "default"}
            _say(config, "floor: NATS request/reply ...")
            results["floor_nats_request"] = await _nats_floor(client, max(config.actions, 200))
            _say(config, "floor: JetStream publish to its ack ...")
            results["floor_js_publish"] = await _js_publish_floor(client, max(config.actions, 200))
            _say(config, "floor: bash -c 'echo hi' subprocess ...")
            results["floor_bash_spawn"] = await _spawn_floor(200)
            _say(config, f"session create -> ready, warm pool, x{config.sessions} ...")
            results["create_warm"] = await _creates_warm(client, config.sessions, spec)
            _say(config, f"session create -> ready, cold start, x{config.sessions} ...")
            results["create_cold"] = await _creates_cold(client, config.sessions, spec)
            async with await client.create_session(**spec) as session:
                await _round_trips(session, 50)  # warm up
                _say(config, f"echo hi round trip x{config.actions} ...")
                t = time.perf_counter()
                samples = await _round_trips(session, config.actions)
                elapsed = time.perf_counter() - t
                results["echo_round_trip"] = {**_ms(samples), "actions_per_s": round(len(samples) / elapsed, 1)}
            sessions = [await client.create_session(**spec) for _ in range(config.parallel)]
            try:
                per = max(config.actions // config.parallel, 1)
                _say(config, f"echo hi from {config.parallel} sessions at once x{per} each ...")
                t = time.perf_counter()
                parts = await asyncio.gather(*(_round_trips(s, per) for s in sessions))
                elapsed = time.perf_counter() - t
                flat = [x for part in parts for x in part]
                results["echo_parallel"] = {**_ms(flat), "sessions": config.parallel,
                                            "actions_per_s": round(len(flat) / elapsed, 1)}
            finally:
                await asyncio.gather(*(s.close() for s in sessions))
            if config.density:
                _say(config, f"density: {config.density} idle sandboxes at once ...")
                results["density"] = await _density(client, config.density, spec)
    results["secret_masking"] = _masking_floor()
    if config.backend == "docker":
        _say(config, "floor: the Docker engine itself (run `true`, exec `echo hi`) ...")
        results["docker_floor"] = await _docker_floors()
    _report(config, results)
    return results


async def run_ipython_bench(config: BenchConfig) -> dict[str, object]:
    """The jupyter plugin: a warm kernel's ``1+1`` through NATS, the first cell of a new session
    (the kernel's lazy start included), what a declared but unused plugin costs, and the floor —
    a bare jupyter_client execute to a kernel on this host."""
    async with _maybe_embedded(config) as url:
        async with await Client.connect(url) as client:
            spec: dict[str, Any] = {"backend": config.backend} if config.backend else {}
            results: dict[str, object] = {"nats_url": url, "backend": config.backend or "default"}
            _say(config, "floor: NATS request/reply ...")
            results["floor_nats_request"] = await _nats_floor(client, 200)
            _say(config, "floor: jupyter_client execute to a local kernel ...")
            results["floor_kernel_execute"] = await _kernel_floor(min(config.actions, 300))
            n_first = max(1, min(config.sessions, 10))
            _say(config, f"first cell of a new session (lazy kernel start), x{n_first} ...")
            results["ipython_first_cell"] = await _first_cells(client, n_first, spec)
            async with await client.create_session(**spec, plugins=["jupyter"]) as session:
                await _cells(session, 20)
                _say(config, f"ipython 1+1 round trip, warm kernel, x{config.actions} ...")
                t = time.perf_counter()
                samples = await _cells(session, config.actions)
                results["ipython_round_trip"] = {**_ms(samples), "actions_per_s": round(len(samples) / (time.perf_counter() - t), 1)}
            _say(config, "idle executor RSS with and without plugins=['jupyter'] ...")
            results["idle_rss"] = {"without_mb": await _idle_rss(client, spec), "with_jupyter_mb":
                                   await _idle_rss(client, {**spec, "plugins": ["jupyter"]})}
    if config.as_json:
        print(json.dumps(results, indent=2))
    else:
        _print_rows(results, ("floor_nats_request", "floor_kernel_execute", "ipython_first_cell", "ipython_round_trip"))
        rss = results["idle_rss"]
        assert isinstance(rss, dict)
        print(f"idle sandbox executor RSS: {rss['without_mb']} MB without plugins, {rss['with_jupyter_mb']} MB "
              "with plugins=['jupyter'] (no cell run)")
    return results


async def run_browser_bench(config: BenchConfig) -> dict[str, object]:
    """The browser plugin (warm ``browse_url``, first action with the lazy start, ``click(bid)``,
    idle cost) and forwarded ports (a GET through ``expose`` vs the same GET inside the sandbox)."""
    from ._bench_browser import browser_bench
    from ._bench_ports import forward_overhead

    async with _maybe_embedded(config) as url:
        async with await Client.connect(url) as client:
            n = max(5, min(config.actions, 200))
            _say(config, f"browser: first browse_url x3, warm browse_url and click(bid) x{n}, idle RSS ...")
            results: dict[str, Any] = {"nats_url": url, **await browser_bench(client, config.backend, n)}
            _say(config, "ports: 200 keep-alive GETs inside the sandbox, then through its forwarded port ...")
            spec: dict[str, Any] = {"backend": config.backend} if config.backend else {}
            async with await client.create_session(**spec) as session:
                results["forwarded_get"] = await forward_overhead(session)
    if config.as_json:
        print(json.dumps(results, indent=2))
        return results
    _print_rows(results, ("browse_url_first", "browse_url_warm", "click"))
    rss, fwd = results["idle_rss"], results["forwarded_get"]
    print(f"idle sandbox executor RSS: {rss['without_mb']} MB without plugins, {rss['with_browser_declared_mb']} MB "
          f"with plugins=['browser'] (never browsed); executor tree with Chromium running: "
          f"{rss['executor_tree_pss_with_browser_running_mb']} MB PSS")
    print(f"HTTP GET p50: {fwd['inside_p50_ms']} ms inside the sandbox, {fwd['forwarded_p50_ms']} ms through the "
          f"forwarded port (+{fwd['overhead_p50_ms']} ms)")
    return results


async def _cells(session: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = await session.ipython("1+1")
        samples.append(time.perf_counter() - t)
        if not isinstance(out, IPythonOutput) or out.content != "2\n":
            raise RuntimeError(f"unexpected answer to 1+1: {out!r}")
    return samples


async def _first_cells(client: Client, n: int, spec: dict[str, Any]) -> dict[str, float]:
    samples = []
    for _ in range(n):
        async with await client.create_session(**spec, plugins=["jupyter"]) as session:
            samples.extend(await _cells(session, 1))
    return _ms(samples)


async def _idle_rss(client: Client, spec: dict[str, Any], n: int = 3) -> float:
    sessions = [await client.create_session(**spec) for _ in range(n)]
    try:
        rss_kb = [int((await s.cmd("awk '/VmRSS/ {print $2}' /proc/$PPID/status")).content.strip()) for s in sessions]
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return round(statistics.median(rss_kb) / 1024, 1)


async def _kernel_floor(n: int) -> dict[str, float]:
    """jupyter_client's own round trip: execute ``1+1`` and wait for idle, against a kernel it started."""
    from jupyter_client import AsyncKernelManager

    from executor.plugins import KERNEL_OPTIONS  # the kernel as the plugin starts it

    scratch = tempfile.mkdtemp(prefix="corral-bench-kernel-")
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(scratch, "k"),
                            connection_file=os.path.join(scratch, "k.json"))
    await km.start_kernel(cwd=scratch, extra_arguments=list(KERNEL_OPTIONS))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        samples = []
        for _ in range(n + 20):
            t = time.perf_counter()
            msg_id = kc.execute("1+1")
            while True:
                msg = await kc.get_iopub_msg(timeout=10)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                        and msg["content"]["execution_state"] == "idle":
                    break
            samples.append(time.perf_counter() - t)
        return _ms(samples[20:])
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        shutil.rmtree(scratch, ignore_errors=True)


async def _density(client: Client, n: int, spec: dict[str, str]) -> dict[str, float]:
    """``n`` idle sandboxes on one worker: how long they take to start, and each executor's RSS.

    The RSS is read from inside each sandbox (its shell's parent is the executor), so it works
    for every backend without touching the host."""
    t = time.perf_counter()
    sessions = await asyncio.gather(*(client.create_session(**spec) for _ in range(n)))
    started = time.perf_counter() - t
    try:
        rss_kb = []
        for session in sessions:
            out = await session.cmd("awk '/VmRSS/ {print $2}' /proc/$PPID/status")
            rss_kb.append(int(out.content.strip()))
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return {"n": n, "start_all_s": round(started, 2), "executor_rss_mb_p50": round(statistics.median(rss_kb) / 1024, 1),
            "executor_rss_mb_max": round(max(rss_kb) / 1024, 1)}


async def _docker_floors(n_run: int = 5, n_exec: int = 50) -> dict[str, object]:
    """What the engine itself costs: run `true` in a fresh container, and exec `echo hi` in one."""
    import aiodocker

    import images

    async with aiodocker.Docker() as docker:
        image = await images.ensure_runtime_image(docker)
        runs = []
        for _ in range(n_run):
            t = time.perf_counter()
            container = await docker.containers.create({"Image": image, "Cmd": ["true"], "Entrypoint": [],
                                                        "HostConfig": {"NetworkMode": "none"}})
            await container.start()
            await container.wait()
            await container.delete(force=True)
            runs.append(time.perf_counter() - t)
        idle = await docker.containers.create({"Image": image, "Cmd": ["sleep", "600"], "Entrypoint": [],
                                               "HostConfig": {"NetworkMode": "none"}})
        await idle.start()
        execs = []
        try:
            for _ in range(n_exec):
                t = time.perf_counter()
                execution = await idle.exec(["echo", "hi"], stdout=True, stderr=True)
                async with execution.start(detach=False) as stream:
                    while await stream.read_out() is not None:
                        pass
                execs.append(time.perf_counter() - t)
        finally:
            await idle.delete(force=True)
    return {"image": image, "docker_run_true": _ms(runs), "docker_exec_echo": _ms(execs)}


def _say(config: BenchConfig, text: str) -> None:
    if not config.as_json:
        print(text, file=sys.stderr, flush=True)


def _report(config: BenchConfig, results: dict[str, object]) -> None:
    if config.as_json:
        print(json.dumps(results, indent=2))
        return
    rows = [(name, results[name]) for name in ("floor_nats_request", "floor_js_publish", "floor_bash_spawn", "create_warm", "create_cold",
                                               "echo_round_trip", "echo_parallel")]
    floor = results.get("docker_floor")
    if isinstance(floor, dict):
        rows += [("floor_docker_run_true", floor["docker_run_true"]), ("floor_docker_exec_echo", floor["docker_exec_echo"])]
    _print_table(results, rows)
    masking = results.get("secret_masking")
    if isinstance(masking, dict):
        print(f"secret masking (one secret; none: skipped): {masking['cmd_output_4k_us']} us per 4 KB cmd_output "
              f"({masking['cmd_output_4k_echoed_us']} us when it echoes the value), {masking['chunk_4k_us']} us per 4 KB chunk")
    density = results.get("density")
    if isinstance(density, dict):
        print(f"density: {density['n']} idle sandboxes started in {density['start_all_s']} s; executor RSS "
              f"p50 {density['executor_rss_mb_p50']} MB, max {density['executor_rss_mb_max']} MB")


def _print_rows(results: dict[str, object], names: tuple[str, ...]) -> None:
    _print_table(results, [(name, results[name]) for name in names])


def _print_table(results: dict[str, object], rows: list[tuple[str, object]]) -> None:
    print(f"\ncorral bench  ({results['nats_url']}, backend {results['backend']}, {os.cpu_count()} cores)")
    print(f"{'measure':34} {'n':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'per s':>9}")
    for name, r in rows:
        assert isinstance(r, dict)
        rate = r.get("actions_per_s", "")
        print(f"{name:34} {r['n']:>6} {r['p50_ms']:>9} {r['p90_ms']:>9} {r['p99_ms']:>9} {rate:>9}")


@contextlib.asynccontextmanager
async def _maybe_embedded(config: BenchConfig) -> AsyncIterator[str]:
    """With ``embedded``, start ``corral up`` as a separate process so it does not share our loop."""
    if not config.embedded:
        yield config.nats_url
        return
    async with corral_up_process("--workers", str(config.workers),
                                 *(["--backend", config.backend] if config.backend else [])) as url:
        yield url


@contextlib.asynccontextmanager
async def corral_up_process(*args: str) -> AsyncIterator[str]:
    """A private ``corral up`` (own broker on a free port, own data dir) in a process of its own; its NATS URL."""
    from actors.embedded import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as data:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "up", "--port", str(port), "--data-dir", data, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
            if b"corral is up" not in line:
                raise RuntimeError(f"corral up did not start: {line!r}")
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            await proc.wait()


async def run_scaling(config: BenchConfig, worker_counts: list[int], *, creates: int = 32,
                      concurrency: int = 8) -> list[dict[str, object]]:
    """For each worker count, a private deployment: sessions/s created and actions/s served."""
    rows = []
    for n in worker_counts:
        cfg = msgspec.structs.replace(config, embedded=True, workers=n)
        async with _maybe_embedded(cfg) as url:
            async with await Client.connect(url) as client:
                spec = {"backend": config.backend} if config.backend else {}
                while len(await client.workers()) < n:
                    await asyncio.sleep(0.1)
                _say(config, f"{n} worker(s): {creates} creates, {concurrency} at a time ...")
                slots = asyncio.Semaphore(concurrency)
                sessions = []

                async def create() -> None:
                    async with slots:
                        sessions.append(await client.create_session(**spec))

                t = time.perf_counter()
                await asyncio.gather(*(create() for _ in range(creates)))
                create_rate = creates / (time.perf_counter() - t)
                per = max(config.actions // len(sessions), 10)
                _say(config, f"{n} worker(s): {per} echo round trips in each of {len(sessions)} sessions at once ...")
                t = time.perf_counter()
                parts = await asyncio.gather(*(_round_trips(s, per) for s in sessions))
                elapsed = time.perf_counter() - t
                flat = [x for part in parts for x in part]
                placed = sorted({s.info.worker_id for s in sessions})
                await asyncio.gather(*(s.close() for s in sessions))
        rows.append({"workers": n, "sessions_per_s": round(create_rate, 1),
                     "actions_per_s": round(len(flat) / elapsed, 1), **_ms(flat), "workers_used": len(placed)})
    if config.as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"\ncorral bench --workers  ({os.cpu_count()} cores; each row is a fresh deployment)")
        print(f"{'workers':>7} {'sessions/s':>11} {'actions/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for r in rows:
            print(f"{r['workers']:>7} {r['sessions_per_s']:>11} {r['actions_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8}")
    return rows
