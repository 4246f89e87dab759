"""Batch tasks and results: the JSONL formats, and the crash-safe results file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Iterable, Literal

import msgspec

from protocol import Mount

TaskStatus = Literal["passed", "failed", "error", "timeout"]
OUTPUT_TAIL_CHARS = 2000


class Task(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of ``tasks.jsonl``.

    Steps run in this order: ``setup`` (each must exit 0, in the session's first directory, one
    shell so ``cd``/``export`` carry over), ``files`` (paths relative to ``workdir``), ``patch``
    (applied in ``workdir``), ``eval`` (each run in ``workdir``; the task passes when every one
    exits with ``expect_exit_code``).
    """

    id: Annotated[str, msgspec.Meta(min_length=1)]
    image: str | None = None
    setup: list[str] = []
    files: dict[str, str] = {}
    patch: str | None = None
    """A unified diff: ``git apply`` when ``workdir`` is the top of a git work tree, else ``patch -p1``."""
    eval: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    """Budget for setup + files + patch + eval, counted from the moment the sandbox is ready."""
    expect_exit_code: int = 0
    workdir: str | None = None
    """Relative paths are taken from the session's first directory; None is that directory."""
    mounts: list[Mount] = []
    """Host directories the sandbox needs (e.g. a repository mirror); the workers must allow them."""


class BadLine(msgspec.Struct, frozen=True, kw_only=True):
    """A line of the tasks file that is not a valid task; it becomes an ``error`` result."""

    line: int
    message: str
    id: str


class TaskResult(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``results.jsonl``, appended and flushed as each task finishes."""

    id: str
    status: TaskStatus
    duration_s: float
    exit_code: int | None = None
    output_tail: str = ""
    worker_id: str | None = None
    step: str | None = None
    """The step that decided the status: ``create``, ``setup[1]``, ``files``, ``patch``, ``eval[0]``, ``line``."""
    session_id: str | None = None
    attempts: int = 1


class _RecordedId(msgspec.Struct):
    id: str


def parse_tasks(lines: Iterable[str | bytes]) -> list[Task | BadLine]:
    """Parse JSONL; a bad line (or a repeated id) becomes a ``BadLine`` naming its line number."""
    out: list[Task | BadLine] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task = msgspec.json.decode(line, type=Task)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            out.append(BadLine(line=number, message=f"line {number}: {exc}", id=_guess_id(line, number)))
            continue
        if task.id in seen:
            out.append(BadLine(line=number, message=f"line {number}: duplicate task id {task.id!r}",
                               id=f"{task.id}@line{number}"))
            continue
        seen.add(task.id)
        out.append(task)
    return out


def load_tasks(path: str | os.PathLike[str]) -> list[Task | BadLine]:
    with open(path, "rb") as f:
        return parse_tasks(f)


def _guess_id(line: str | bytes, number: int) -> str:
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return value["id"]
    return f"@line{number}"


def recorded_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids already in a results file; a torn last line (a crash mid-write) is ignored."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return set()
    ids = set()
    for line in data.splitlines():
        try:
            ids.add(msgspec.json.decode(line, type=_RecordedId).id)
        except msgspec.DecodeError:
            continue
    return ids


class ResultsFile:
    """Appends one JSON line per result, flushed and fsynced before ``append`` returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()
        self._file = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line from a crash: start ours on a fresh line
                    self._file.write(b"\n")

    def _write(self, line: bytes) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def append(self, result: TaskResult) -> None:
        async with self._lock:
            await asyncio.to_thread(self._write, msgspec.json.encode(result) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    return text if len(text) <= limit else text[-limit:]
