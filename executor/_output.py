"""A command's output, bounded: head and tail kept in memory, the middle streamed to a log file.

The log is named by ``log_name``, never by the raw action id, and a log that cannot be written
(disk full, the output directory removed by the command itself) costs only the log: the answer
keeps its head and tail and says why the full output is missing. Nothing here raises OSError
into the PTY reader that feeds it.
"""

from __future__ import annotations

from collections import deque
import contextlib
import hashlib
import os
import re
from typing import IO

from protocol import new_id

OUTPUT_CAP_CHARS = 30_000
HEAD_CHARS = 10_000
TAIL_CHARS = 20_000
_NAME_PREFIX_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def log_name(action_id: str) -> str:
    """A file name for an action's log: a readable prefix of the id and a hash of all of it.

    Safe whatever the id holds ('/', '..', NUL, 10 kB of it): at most ~90 bytes of
    ``[A-Za-z0-9_.-]``, never starting with a dot, distinct for distinct ids.
    """
    prefix = _UNSAFE.sub("_", action_id[:_NAME_PREFIX_CHARS]).lstrip(".")
    digest = hashlib.sha256(action_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix}-{digest}.log" if prefix else f"{digest}.log"


class _Output:
    """One observation's output: all of it up to the cap, then head, a bounded tail and a log file."""

    def __init__(self, output_dir: str) -> None:
        self._dir = output_dir
        self._parts: list[str] = []
        self._head = ""
        self._tail: deque[str] = deque()
        self._tail_chars = 0
        self._total = 0
        self._spilled = False
        self._log: IO[str] | None = None
        self._log_path = ""
        self._log_error = ""

    def append(self, text: str) -> None:
        self._total += len(text)
        if self._spilled:
            if self._log is not None:
                try:
                    self._log.write(text)
                except (OSError, ValueError) as exc:
                    self._lose_log(exc)
            self._push_tail(text)
            return
        self._parts.append(text)
        if self._total > OUTPUT_CAP_CHARS:
            whole = "".join(self._parts)
            self._parts = []
            self._spilled = True
            self._head = whole[:HEAD_CHARS]
            self._push_tail(whole[HEAD_CHARS:])
            try:
                os.makedirs(self._dir, exist_ok=True)
                self._log_path = os.path.join(self._dir, f"{new_id('partial-')}.log")
                self._log = open(self._log_path, "w", encoding="utf-8")  # noqa: SIM115 - kept open while streaming
                self._log.write(whole)
            except (OSError, ValueError) as exc:
                self._lose_log(exc)

    def _push_tail(self, text: str) -> None:
        self._tail.append(text)
        self._tail_chars += len(text)
        while self._tail_chars - len(self._tail[0]) >= TAIL_CHARS:
            self._tail_chars -= len(self._tail.popleft())

    def _lose_log(self, exc: Exception) -> None:
        """Stop logging: the answer keeps head and tail and names the reason."""
        self._log_error = getattr(exc, "strerror", None) or str(exc)
        if self._log is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log.close()
            self._log = None
        if self._log_path:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)

    def finish(self, action_id: str) -> tuple[str, bool, str | None]:
        """(content, truncated, full_output_path); the log is renamed after the action."""
        if not self._spilled:
            return "".join(self._parts), False, None
        path: str | None = None
        if self._log is not None:
            try:
                self._log.close()
                self._log = None
                target = os.path.join(self._dir, log_name(action_id))
                os.replace(self._log_path, target)
                path = target
            except (OSError, ValueError) as exc:
                self._lose_log(exc)
        tail = "".join(self._tail)[-TAIL_CHARS:]
        dropped = self._total - len(self._head) - len(tail)
        where = f"the full output is in {path}" if path else f"the full output could not be kept ({self._log_error})"
        note = f"\n[... {dropped} characters omitted; {where} ...]\n"
        return self._head + note + tail, True, path

    def discard(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log.close()
            self._log = None
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
