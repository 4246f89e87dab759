"""A command's output, bounded: head and tail kept in memory, the middle streamed to a log file."""

from __future__ import annotations

from collections import deque
import contextlib
import os
from typing import IO

from protocol import new_id

OUTPUT_CAP_CHARS = 30_000
HEAD_CHARS = 10_000
TAIL_CHARS = 20_000


class _Output:
    """One observation's output: all of it up to the cap, then head, a bounded tail and a log file."""

    def __init__(self, output_dir: str) -> None:
        self._dir = output_dir
        self._parts: list[str] = []
        self._head = ""
        self._tail: deque[str] = deque()
        self._tail_chars = 0
        self._total = 0
        self._log: IO[str] | None = None
        self._log_path = ""

    def append(self, text: str) -> None:
        self._total += len(text)
        if self._log is not None:
            self._log.write(text)
            self._push_tail(text)
            return
        self._parts.append(text)
        if self._total > OUTPUT_CAP_CHARS:
            whole = "".join(self._parts)
            self._parts = []
            os.makedirs(self._dir, exist_ok=True)
            self._log_path = os.path.join(self._dir, f"{new_id('partial-')}.log")
            self._log = open(self._log_path, "w", encoding="utf-8")  # noqa: SIM115 - kept open while streaming
            self._log.write(whole)
            self._head = whole[:HEAD_CHARS]
            self._push_tail(whole[HEAD_CHARS:])

    def _push_tail(self, text: str) -> None:
        self._tail.append(text)
        self._tail_chars += len(text)
        while self._tail_chars - len(self._tail[0]) >= TAIL_CHARS:
            self._tail_chars -= len(self._tail.popleft())

    def finish(self, action_id: str) -> tuple[str, bool, str | None]:
        """(content, truncated, full_output_path); the log is renamed after the action."""
        if self._log is None:
            return "".join(self._parts), False, None
        self._log.close()
        path = os.path.join(self._dir, f"{action_id}.log")
        os.replace(self._log_path, path)
        tail = "".join(self._tail)[-TAIL_CHARS:]
        dropped = self._total - len(self._head) - len(tail)
        note = f"\n[... {dropped} characters omitted; the full output is in {path} ...]\n"
        return self._head + note + tail, True, path

    def discard(self) -> None:
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
