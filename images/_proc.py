"""Child processes with their output streamed as progress (never blocking the loop)."""

from __future__ import annotations

import asyncio
import collections

from ._progress import ProgressFn, reporter


async def stream_process(argv: list[str], *, stage: str, progress: ProgressFn | None,
                         cwd: str | None = None) -> tuple[int, tuple[str, ...]]:
    """Run argv with stdout+stderr merged into progress lines; returns its exit code and last lines.

    Raises FileNotFoundError when argv[0] does not exist.
    """
    report = reporter(progress)
    tail: collections.deque[str] = collections.deque(maxlen=25)
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            report(stage, line)
        return await proc.wait(), tuple(tail)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
