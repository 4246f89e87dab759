"""The audit log on disk: append batches durably, recover the chain head after any stop.

Blocking file I/O only; the writer calls every method from a worker thread, one at a time.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import os
from typing import IO, Callable, NamedTuple

import msgspec
import structlog

from protocol import Subjects

from ._format import (
    AUDIT_LOCKED,
    AUDIT_LOG_CORRUPT,
    GENESIS,
    AuditError,
    Entry,
    canonical_bytes,
    day_file,
    digest,
    file_day,
    line_of,
    log_files,
    parse_entry,
    split_line,
)
from ._keys import Ed25519PrivateKey

log = structlog.get_logger()

Clock = Callable[[], datetime.datetime]
LOCK_FILE = ".audit.lock"
_TAIL_BLOCK = 64 * 1024


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Incoming(NamedTuple):
    """One stream message, as much of it as the log needs."""

    seq: int
    time: str
    subject: str
    data: bytes
    json: bool


_any_mp = msgspec.msgpack.Decoder()
_any_json = msgspec.json.Decoder()


class AuditLog:
    """A directory of day files forming one hash chain. ``open()`` takes the directory's lock and
    recovers ``head`` (the last record's hash) and ``last_seq``; ``append()`` writes one batch with
    one write and one fsync, skipping what the log already holds (``seq <= last_seq``)."""

    def __init__(self, directory: str, subjects: Subjects, *, signing_key: Ed25519PrivateKey | None = None,
                 clock: Clock = utc_now) -> None:
        self.directory = os.path.abspath(directory)
        self._subjects = subjects
        self._key = signing_key
        self._clock = clock
        self.head = GENESIS
        self.last_seq = 0
        self.written = 0
        self.skipped = 0
        self._lock_fd: int | None = None
        self._out: IO[bytes] | None = None
        self._day: datetime.date | None = None
        self._newest_day: datetime.date | None = None

    # ------------------------------------------------------------------ open / recover / close

    def open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditError(AUDIT_LOCKED, f"another audit writer holds {self.directory}") from None
        self._lock_fd = fd
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> None:
        files = log_files(self.directory)
        self._newest_day = file_day(files[-1]) if files else None
        for path in reversed(files):
            last = _last_record(path)
            if last is not None:
                canonical, entry = last
                self.head, self.last_seq = digest(canonical), entry.seq
                break
        log.info("audit_log_opened", directory=self.directory, last_seq=self.last_seq, head=self.head,
                 files=len(files), signed=self._key is not None)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self._day = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ append

    def append(self, batch: list[Incoming]) -> int:
        """Write the records of ``batch`` the log does not hold yet; durable when this returns."""
        lines: list[bytes] = []
        head, last = self.head, self.last_seq
        for msg in batch:
            if msg.seq <= last:
                self.skipped += 1  # redelivered: written before, its ack was lost
                continue
            canonical = self._canonical(msg, head)
            lines.append(line_of(canonical, self._key.sign(canonical) if self._key else None))
            lines.append(b"\n")
            head, last = digest(canonical), msg.seq
        if not lines:
            return 0
        out = self._file_for_today()
        out.write(b"".join(lines))
        out.flush()
        os.fdatasync(out.fileno())
        self.head, self.last_seq = head, last
        self.written += len(lines) // 2
        return len(lines) // 2

    def _canonical(self, msg: Incoming, prev: str) -> bytes:
        parsed = self._subjects.parse_session_subject(msg.subject)
        session_id, channel, kind = parsed if parsed else ("", "", "")
        tenant = self._subjects.tenant_of(msg.subject) or ""
        event = _decode(msg.data, msg.json)
        if channel == "status" and not kind and isinstance(event, dict):
            kind = str(event.get("status", ""))
        entry = Entry(seq=msg.seq, time=msg.time, subject=msg.subject, session_id=session_id, tenant=tenant,
                      channel=channel, kind=kind, event=event, prev=prev)
        try:
            return canonical_bytes(entry)
        except (TypeError, ValueError, msgspec.EncodeError):
            # Decodable as MessagePack, but not as JSON (extension types, odd keys): keep the bytes.
            return canonical_bytes(msgspec.structs.replace(entry, event=_undecodable(msg.data)))

    def _file_for_today(self) -> IO[bytes]:
        day = self._clock().astimezone(datetime.timezone.utc).date()
        if self._newest_day is not None and day < self._newest_day:
            day = self._newest_day  # the clock went back: never append to an older file than the newest
        if self._out is not None and self._day == day:
            return self._out
        if self._out is not None:
            self._out.close()
        path = os.path.join(self.directory, day_file(day))
        created = not os.path.exists(path)
        self._out = open(path, "ab")
        self._day = self._newest_day = day
        if created:
            _fsync_dir(self.directory)
            log.info("audit_file_started", path=path, after_seq=self.last_seq)
        return self._out


def _decode(data: bytes, as_json: bool) -> object:
    try:
        event = (_any_json if as_json else _any_mp).decode(data)
    except (msgspec.DecodeError, RecursionError):
        return _undecodable(data)
    return event if isinstance(event, dict) else {"value": event}


def _undecodable(data: bytes) -> dict[str, object]:
    return {"undecodable": True, "data_b64": base64.b64encode(data).decode()}


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_record(path: str) -> tuple[bytes, Entry] | None:
    """The last record of a day file (canonical bytes, entry), None if it holds none.

    A torn last line (bytes after the last newline: a write cut short by a crash) is moved to
    ``<file>.torn-<offset>`` and cut off. Nothing in it was ever acknowledged (a batch is acked
    only after its newline-terminated lines are on disk), so the stream redelivers it and the
    writer writes the same record again."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        end = _line_start(f, size)
        if end != size:
            f.seek(end)
            torn = f.read()
            sidecar = f"{path}.torn-{end}"
            with open(sidecar, "wb") as keep:
                keep.write(torn)
                keep.flush()
                os.fsync(keep.fileno())
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
            log.warning("audit_torn_tail_truncated", path=path, offset=end, bytes=len(torn), kept_in=sidecar)
            if end == 0:
                return None
        start = _line_start(f, end - 1)
        f.seek(start)
        line = f.read(end - 1 - start)
    try:
        canonical, _sig = split_line(line)
        return canonical, parse_entry(canonical)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AuditError(AUDIT_LOG_CORRUPT, f"the last line of {path} is not an audit record ({exc}); "
                                            "run `corral audit verify` and repair or move the log aside") from None


def _line_start(f: IO[bytes], end: int) -> int:
    """Offset just after the last ``\\n`` before offset ``end`` (0 when there is none)."""
    pos = end
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        f.seek(pos - step)
        block = f.read(step)
        found = block.rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0
