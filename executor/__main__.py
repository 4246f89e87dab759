"""``corral-executor``: the process inside every sandbox.

Configuration comes from the environment variable CORRAL_EXECUTOR_CONFIG (JSON of
ExecutorConfig) so the session key never shows in the process list; the variable is
removed before any shell starts. When listening, one JSON line goes to stdout:
``{"ready": true, "pid": ..., "port": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import msgspec

from ._server import Executor, ExecutorConfig, ExecutorServer

CONFIG_ENV = "CORRAL_EXECUTOR_CONFIG"


async def _serve(config: ExecutorConfig) -> None:
    os.makedirs(config.output_dir, exist_ok=True)
    executor = Executor(config)
    server = ExecutorServer(executor, config)
    await executor.start()
    await server.start()
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "port": server.port}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()
        await executor.aclose()


def main() -> None:
    raw = os.environ.pop(CONFIG_ENV, None)
    if raw is None and len(sys.argv) > 1:
        raw = open(sys.argv[1]).read()
    if raw is None:
        sys.exit(f"corral-executor: set {CONFIG_ENV} to the executor's JSON configuration")
    try:
        config = msgspec.json.decode(raw, type=ExecutorConfig)
    except msgspec.DecodeError as exc:
        sys.exit(f"corral-executor: bad configuration: {exc}")
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
