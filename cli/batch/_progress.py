"""Live batch statistics, and their progress on stderr: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import Any, Callable, TextIO

from ._tasks import TaskResult

_STATUS_FIELD = {"passed": "passed", "failed": "failed", "error": "errors", "timeout": "timeouts"}


class BatchStats:
    """Counters of one run; ``rate_per_min`` and ``eta_s`` are computed from the tasks done so far."""

    def __init__(self, total: int, *, skipped: int = 0) -> None:
        self.total = total
        self.skipped = skipped
        self.running = 0
        self.done = 0
        self.passed = self.failed = self.errors = self.timeouts = 0
        self.started_at = time.monotonic()

    def task_started(self) -> None:
        self.running += 1

    def task_finished(self, result: TaskResult) -> None:
        self.running -= 1
        self.done += 1
        field = _STATUS_FIELD[result.status]
        setattr(self, field, getattr(self, field) + 1)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def rate_per_min(self) -> float:
        elapsed = self.elapsed_s
        return self.done * 60.0 / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (self.total - self.done) * self.elapsed_s / self.done


Progress = Callable[[BatchStats, TaskResult | None], None]
"""Called when a task starts (result None) and when it finishes (with its result)."""


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def status_line(stats: BatchStats) -> str:
    return (f"{stats.done}/{stats.total} done  {stats.running} running  {stats.passed} passed  "
            f"{stats.failed} failed  {stats.errors} errors  {stats.timeouts} timeouts  "
            f"{stats.rate_per_min:.1f} tasks/min  ETA {format_duration(stats.eta_s)}")


class ProgressBar:
    """On a terminal, a live ``rich`` progress bar (done/total, rate, ETA, outcomes); otherwise one
    plain line per finished task, so logs and CI output stay readable."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._live: Any = None
        self._task: Any = None

    def __call__(self, stats: BatchStats, result: TaskResult | None) -> None:
        if not self._tty:
            if result is not None:
                self._stream.write(f"[batch] {result.status:8} {result.id} ({result.duration_s:.1f}s) | {status_line(stats)}\n")
                self._stream.flush()
            return
        if self._live is None:
            self._start(stats)
        outcomes = (f"{stats.running} running  {stats.passed} passed  {stats.failed} failed  "
                    f"{stats.errors} errors  {stats.timeouts} timeouts")
        self._live.update(self._task, completed=stats.done, total=stats.total, outcomes=outcomes,
                          rate=f"{stats.rate_per_min:.1f} tasks/min")

    def _start(self, stats: BatchStats) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(file=self._stream, force_terminal=True, width=None if self._stream.isatty() else 160)
        self._live = Progress(TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                              TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[outcomes]}"),
                              console=console, transient=False)
        self._task = self._live.add_task("batch", total=stats.total, outcomes="", rate="")
        self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
