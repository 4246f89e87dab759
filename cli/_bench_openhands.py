"""``corral bench --openhands``: OpenHands' own LocalRuntime vs ``CorralRuntime``, one run.

Both sides answer the same ``CmdRunAction('echo hi')`` through ``Runtime.run_action``, as an
OpenHands agent's controller calls it: LocalRuntime through its action-execution server (an HTTP
server on this host driving a tmux pane), CorralRuntime through NATS to a private local-backend
``corral up`` (its own broker, controller and worker) in a process of its own.

OpenHands needs Python >= 3.12: ``corral bench --openhands`` runs this module with the interpreter
of ``.venv-openhands`` (``./dev setup`` builds it) when its own cannot import ``openhands``.

    .venv-openhands/bin/python -m cli._bench_openhands [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any

from cli._stats import latency_ms

ROOT = Path(__file__).resolve().parents[1]



def _time_echo(runtime: Any, calls: int) -> dict[str, float]:
    from openhands.events.action import CmdRunAction

    for _ in range(10):  # warm up: the first commands pay for lazy setup on both sides
        runtime.run_action(CmdRunAction(command="echo hi"))
    samples, wrong = [], 0
    for _ in range(calls):
        action = CmdRunAction(command="echo hi")
        start = time.perf_counter()
        obs = runtime.run_action(action)
        samples.append(time.perf_counter() - start)
        wrong += obs.content.strip() != "hi" or getattr(obs, "exit_code", None) != 0
    # Answers other than `hi` with exit code 0 (LocalRuntime's tmux pane sometimes loses the output).
    return {**latency_ms(samples), "wrong_answers": wrong}


def _config(workspace: str) -> Any:
    from openhands.core.config import OpenHandsConfig

    config = OpenHandsConfig()
    config.enable_browser = False
    config.run_as_openhands = False  # LocalRuntime would create a user `openhands` (UID 1000) on this host
    config.workspace_base = config.workspace_mount_path = config.workspace_mount_path_in_sandbox = workspace
    return config


def _runtime(cls: type, config: Any, **kwargs: Any) -> Any:
    from openhands.events.stream import EventStream
    from openhands.llm.llm_registry import LLMRegistry
    from openhands.storage.memory import InMemoryFileStore
    from openhands.utils.async_utils import call_async_from_sync

    sid = f"bench-{os.getpid()}-{cls.__name__.lower()}"
    runtime = cls(config=config, event_stream=EventStream(sid, InMemoryFileStore()),
                  llm_registry=LLMRegistry(config=config), sid=sid, plugins=[], headless_mode=True, **kwargs)
    call_async_from_sync(runtime.connect)
    return runtime


def _local_side(calls: int) -> dict[str, Any]:
    from openhands.runtime.impl.local.local_runtime import LocalRuntime

    with tempfile.TemporaryDirectory(prefix="oh-local-") as workspace:
        start = time.perf_counter()
        try:
            runtime = _runtime(LocalRuntime, _config(workspace))
        except Exception as exc:  # noqa: BLE001 - reported, the corral side still runs
            return {"error": f"{type(exc).__name__}: {exc}"}
        try:
            return {"start_s": round(time.perf_counter() - start, 2), **_time_echo(runtime, calls)}
        finally:
            runtime.close()


def _corral_side(calls: int) -> dict[str, Any]:
    from corral_integrations._session import LoopThread
    from corral_integrations.openhands import CorralRuntime

    from .bench import corral_up_process

    loop = LoopThread("bench-corral-up")
    up = corral_up_process("--backend", "local")
    url = loop.run(up.__aenter__(), timeout=90)
    try:
        with tempfile.TemporaryDirectory(prefix="oh-corral-") as workspace:
            start = time.perf_counter()
            runtime = _runtime(CorralRuntime, _config(workspace), nats_url=url)
            try:
                return {"start_s": round(time.perf_counter() - start, 2), **_time_echo(runtime, calls)}
            finally:
                runtime.close()
    finally:
        loop.run(up.__aexit__(None, None, None), timeout=60)
        loop.close()


def openhands_bench(calls: int) -> dict[str, Any]:
    return {"action": "CmdRunAction('echo hi') via Runtime.run_action", "calls": calls,
            "openhands_local_runtime": _local_side(calls), "corral_runtime": _corral_side(calls)}


def print_openhands(result: dict[str, Any]) -> None:
    print(f"{result['action']}, {result['calls']} calls each")
    for name in ("openhands_local_runtime", "corral_runtime"):
        row = result[name]
        if "error" in row:
            print(f"  {name:24} unavailable: {row['error']}")
        else:
            print(f"  {name:24} p50 {row['p50_ms']:8.2f} ms   p99 {row['p99_ms']:8.2f} ms   "
                  f"(runtime start {row['start_s']} s; {row['wrong_answers']} wrong answers)")


def run_from_cli(calls: int, as_json: bool) -> int:
    """``corral bench --openhands``: here when this interpreter has OpenHands, else in .venv-openhands."""
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # before OpenHands' logger is configured on import
    try:
        import openhands.runtime.base  # noqa: F401
    except ImportError:
        python = os.environ.get("CORRAL_OPENHANDS_PYTHON") or str(ROOT / ".venv-openhands" / "bin" / "python")
        if not os.path.exists(python):
            print(f"OpenHands is not importable here and {python} does not exist: run ./dev setup "
                  "(it builds .venv-openhands with Python 3.12) or set CORRAL_OPENHANDS_PYTHON", file=sys.stderr)
            return 1
        args = [python, "-m", "cli._bench_openhands", "--calls", str(calls), *(["--json"] if as_json else [])]
        return subprocess.run(args, cwd=ROOT).returncode
    result = openhands_bench(calls)
    print(json.dumps(result, indent=2)) if as_json else print_openhands(result)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raise SystemExit(run_from_cli(args.calls, args.json))


if __name__ == "__main__":
    main()
