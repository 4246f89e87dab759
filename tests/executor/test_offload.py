"""The executor's file threads: started up front, and an inline fallback when none can be had."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from executor._offload import Offload

NO_THREADS = """
import asyncio, resource, threading
from executor._offload import Offload
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 6 * 1024 * 1024, resource.RLIM_INFINITY))
pool = Offload()
started = pool.start()
print(started, asyncio.run(pool.run(lambda: threading.current_thread().name)))
"""


async def test_operations_run_on_threads_started_before_them():
    pool = Offload()
    assert pool.start(2) == 2 and pool.start(2) == 2
    names = await asyncio.gather(*(pool.run(lambda: threading.current_thread().name) for _ in range(4)))
    assert set(names) <= {"corral-file-0", "corral-file-1"}
    assert pool.threads == 2
    pool.stop()


async def test_an_operations_exception_reaches_its_caller():
    pool = Offload()
    pool.start(1)

    def fails() -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError, match="no"):
        await pool.run(fails)
    pool.stop()


def test_with_no_thread_to_be_had_an_operation_runs_inline():
    done = subprocess.run([sys.executable, "-c", NO_THREADS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "MainThread"]
