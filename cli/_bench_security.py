"""``corral bench --security``: what the security gate adds to every ``cmd_run``.

Two private deployments (``corral up`` processes, local backend unless ``--backend``): one with
the default security (the ``rules`` analyzer, default rules, default policy), one with
``--no-security``. ``echo hi`` round trips are timed in alternating batches against both, so load
drift on the machine hits both alike; the difference of the medians is the gate's cost on the
action path. The analyzer's own time per action is measured in this process: the rules analyzer
on ``echo hi`` and on a mix of typical agent commands, first sight (parsed) and repeated (cached).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

from protocol import Client, CmdOutput, CmdRun, SessionSpec, new_id

TYPICAL = [
    "cd /workspace && git status --short | head -20", "python -m pytest -q tests/test_x.py -k 'not slow'",
    "grep -rn \"def main\" src/ | head", "ls -la && cat README.md", "pip install -e '.[test]' 2>&1 | tail -3",
    "find . -name '*.py' -newer setup.py | xargs wc -l", "echo $HOME; export PATH=$PATH:/opt/bin",
    "for f in *.txt; do wc -l \"$f\"; done", "sed -n '1,40p' src/app.py", "rm -rf ./build && make -j2",
]


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _up(extra: list[str], backend: str | None) -> contextlib.AbstractAsyncContextManager[str]:
    from .bench import corral_up_process

    return corral_up_process("--warm-pool", "1", "--backend", backend or "local", *extra)


async def _batch(session: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = await session.run(CmdRun(id=new_id(), command="echo hi"))
        samples.append(time.perf_counter() - t)
        if not isinstance(out, CmdOutput) or out.content != "hi\n":
            raise RuntimeError(f"unexpected answer to echo hi: {out!r}")
    return samples


async def analyzer_us(n: int = 2000) -> dict[str, float]:
    """The rules analyzer's own time per action, in this process (µs, p50)."""
    from executor.client import ExecutorClient
    from workers.backends import SandboxHandle
    from workers.security import Security, clear_cache
    from workers.session import SessionContext

    security = Security()
    handle = SandboxHandle(sandbox_id="b", session_id="b", worker_id="b", backend="local", key="k", workdir="/workspace")
    ctx = SessionContext(session_id="b", spec=SessionSpec(), handle=handle, client=ExecutorClient(key="k", port=9))
    gate = security.gate(ctx)

    async def per_action(commands: list[str], fresh: bool) -> float:
        samples = []
        for i in range(n):
            action = CmdRun(id="a", command=commands[i % len(commands)])
            if fresh:
                clear_cache()
            t = time.perf_counter_ns()
            await gate.check(action, ctx)
            samples.append((time.perf_counter_ns() - t) / 1000)
        return round(statistics.median(samples), 1)

    result = {"echo_hi_us": await per_action(["echo hi"], fresh=True),
              "typical_first_sight_us": await per_action(TYPICAL, fresh=True),
              "typical_repeated_us": await per_action(TYPICAL, fresh=False)}
    await gate.aclose()
    return result


async def security_bench(actions: int = 1000, backend: str | None = None, batch: int = 50) -> dict[str, Any]:
    async with _up([], backend) as guarded_url, _up(["--no-security"], backend) as open_url:
        async with await Client.connect(guarded_url) as guarded, await Client.connect(open_url) as unguarded:
            with_gate, without = await guarded.create_session(), await unguarded.create_session()
            try:
                await _batch(with_gate, 100)
                await _batch(without, 100)
                timed: dict[str, list[float]] = {"with": [], "without": []}
                for _ in range(max(actions // batch, 1)):
                    timed["with"] += await _batch(with_gate, batch)
                    timed["without"] += await _batch(without, batch)
            finally:
                await asyncio.gather(with_gate.close(), without.close())
    row = {name: {"n": len(s), "p50_ms": round(_pct(s, 0.5) * 1000, 3), "p95_ms": round(_pct(s, 0.95) * 1000, 3)}
           for name, s in timed.items()}
    return {"echo_hi_with_gate": row["with"], "echo_hi_without_gate": row["without"],
            "added_p50_ms": round(row["with"]["p50_ms"] - row["without"]["p50_ms"], 3),
            "added_p95_ms": round(row["with"]["p95_ms"] - row["without"]["p95_ms"], 3),
            "rules_analyzer": await analyzer_us()}


def print_report(result: dict[str, Any]) -> None:
    print("\ncorral bench --security  (default rules and policy; alternating batches, two private deployments)")
    print(f"{'measure':28} {'n':>6} {'p50 ms':>9} {'p95 ms':>9}")
    for name in ("echo_hi_with_gate", "echo_hi_without_gate"):
        r = result[name]
        print(f"{name:28} {r['n']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9}")
    print(f"{'added by the gate':28} {'':>6} {result['added_p50_ms']:>9} {result['added_p95_ms']:>9}")
    a = result["rules_analyzer"]
    print(f"rules analyzer per action (in process, p50): echo hi {a['echo_hi_us']} µs; typical commands "
          f"{a['typical_first_sight_us']} µs first sight (bashlex parse), {a['typical_repeated_us']} µs repeated")
