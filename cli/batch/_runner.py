"""``run_batch``: many tasks over a bounded number of concurrent sessions, resumable from the results file."""

from __future__ import annotations

import asyncio
from collections import deque
import os
from typing import Any, Sequence

import msgspec
import structlog

from protocol import new_id

from ._progress import BatchStats, Progress
from ._task_run import run_task
from ._tasks import BadLine, ResultsFile, Task, TaskResult, load_tasks, recorded_ids

log = structlog.get_logger()


class BatchSummary(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: str
    total: int
    """Tasks in the input, including those skipped because ``out_path`` already had them."""
    ran: int
    skipped: int
    passed: int
    failed: int
    errors: int
    timeouts: int
    wall_s: float
    tasks_per_min: float
    out_path: str


async def run_batch(
    client: Any,
    tasks: Sequence[Task | BadLine] | str | os.PathLike[str],
    *,
    concurrency: int,
    out_path: str | os.PathLike[str],
    backend: str | None = None,
    progress: Progress | None = None,
    retries: int = 0,
    batch_id: str | None = None,
) -> BatchSummary:
    """Run every task not yet recorded in ``out_path``; each result is appended as it finishes.

    A task's failure never stops the batch. ``retries`` re-runs a task that ended in ``error``
    (infrastructure) up to that many more times; only its last result is recorded.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if isinstance(tasks, (str, os.PathLike)):
        tasks = load_tasks(tasks)
    batch_id = batch_id or "b" + new_id()
    already = recorded_ids(out_path)
    todo = deque(t for t in tasks if t.id not in already)
    stats = BatchStats(len(todo), skipped=len(tasks) - len(todo))
    results = ResultsFile(out_path)
    log.info("batch_started", batch_id=batch_id, tasks=len(todo), skipped=stats.skipped, concurrency=concurrency)

    async def lane() -> None:
        while todo:
            item = todo.popleft()
            stats.task_started()
            if progress:
                progress(stats, None)
            result = await _attempts(client, item, backend=backend, batch_id=batch_id, retries=retries)
            await results.append(result)
            stats.task_finished(result)
            log.info("batch_task_finished", batch_id=batch_id, task_id=result.id, status=result.status,
                     duration_s=result.duration_s, worker_id=result.worker_id)
            if progress:
                progress(stats, result)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(todo))):
                group.create_task(lane())
    finally:
        results.close()
    wall_s = stats.elapsed_s
    summary = BatchSummary(
        batch_id=batch_id, total=len(tasks), ran=stats.done, skipped=stats.skipped, passed=stats.passed,
        failed=stats.failed, errors=stats.errors, timeouts=stats.timeouts, wall_s=round(wall_s, 3),
        tasks_per_min=round(stats.rate_per_min, 2), out_path=str(out_path),
    )
    log.info("batch_finished", **msgspec.structs.asdict(summary))
    return summary


async def _attempts(client: Any, item: Task | BadLine, *, backend: str | None, batch_id: str, retries: int) -> TaskResult:
    if isinstance(item, BadLine):
        return TaskResult(id=item.id, status="error", duration_s=0.0, step="line", output_tail=item.message)
    for attempt in range(1, retries + 2):
        result = await run_task(client, item, backend=backend, labels={"batch": batch_id})
        if result.status != "error":
            break
        log.info("batch_task_error", batch_id=batch_id, task_id=item.id, attempt=attempt, step=result.step)
    return msgspec.structs.replace(result, attempts=attempt)
