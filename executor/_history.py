"""The editor's undo history: each file's earlier contents, newest last, in memory or in a directory.

In memory (the default) the history lives and dies with one ``Editor``. In a directory it is
shared: every process whose editor names the same directory sees one history, so a ``file_edit``
action and a kernel cell calling ``corral_skills.file_editor`` undo each other's edits. There each
edited path has one record file (named by a hash of the path, the path kept inside against
collisions), read afresh for every command and replaced atomically after it, under an exclusive
``flock`` on a lock file beside it so two processes never interleave one file's read and write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
import contextlib
import fcntl
import hashlib
import os

import msgspec

from ._files import atomic_write


class Steps:
    """One file's undo steps while a command runs: None means the file did not exist."""

    def __init__(self, items: list[str | None], maxlen: int) -> None:
        self._items: deque[str | None] = deque(items, maxlen=maxlen)
        self.changed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, previous: str | None) -> None:
        self._items.append(previous)
        self.changed = True

    def last(self) -> str | None:
        return self._items[-1]

    def pop(self) -> None:
        self._items.pop()
        self.changed = True

    def items(self) -> list[str | None]:
        return list(self._items)


class MemoryHistory:
    """One editor's history, gone with it."""

    def __init__(self, maxlen: int) -> None:
        self._maxlen = maxlen
        self._by_path: dict[str, list[str | None]] = {}

    @contextlib.contextmanager
    def steps(self, path: str) -> Iterator[Steps]:
        steps = Steps(self._by_path.get(path, []), self._maxlen)
        yield steps
        if steps.changed:
            if steps:
                self._by_path[path] = steps.items()
            else:
                self._by_path.pop(path, None)


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    steps: list[str | None]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Record).decode


class DirHistory:
    """A history kept in ``directory``, shared by every editor (in any process) that names it."""

    def __init__(self, directory: str, maxlen: int) -> None:
        self._dir = os.path.abspath(directory)
        self._maxlen = maxlen
        os.makedirs(self._dir, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def steps(self, path: str) -> Iterator[Steps]:
        record_path = os.path.join(self._dir, hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:32])
        with open(record_path + ".lock", "a") as lock:
            # each open() is its own lock holder, so this excludes other threads as well as processes
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            steps = Steps(self._read(record_path, path), self._maxlen)
            yield steps
            if not steps.changed:
                return
            if steps:
                atomic_write(record_path + ".json", _encode(_Record(path=path, steps=steps.items())))
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(record_path + ".json")

    @staticmethod
    def _read(record_path: str, path: str) -> list[str | None]:
        """The stored steps; none when there is no record, it is for another path, or it is unreadable."""
        try:
            with open(record_path + ".json", "rb") as f:
                record = _decode(f.read())
        except (FileNotFoundError, msgspec.DecodeError):
            return []
        return record.steps if record.path == path else []
