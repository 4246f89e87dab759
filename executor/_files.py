"""File reads and writes inside the sandbox: byte-exact, atomic, bounded, and off the event loop.

The sync helpers here (path resolution, text sniffing, the atomic write, error translation)
are shared with the editor; the two coroutines are what the executor's server calls. No read
holds more than about ``max_bytes`` of a file, however long its lines.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
from typing import Any, Callable, TypeVar

from protocol import Error, FileContent, FileRead, FileWrite, FileWritten, codes, new_id

from ._offload import offload

T = TypeVar("T")

SNIFF_BYTES = 8192
"""How much of a file's head is checked for NUL bytes before it is treated as text."""
BLOCK_BYTES = 256 * 1024
"""Files are scanned in blocks of this size, never line by line."""
_LISTING_LIMIT = 20


class FileOpError(Exception):
    """A file operation failed in a way the agent can act on; carries the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ------------------------------------------------------------------------ shared helpers


def resolve_path(path: str, cwd: str) -> str:
    """Expand ``~`` and resolve a relative path against ``cwd``; symlinks are kept."""
    expanded = os.path.expanduser(path)
    return os.path.normpath(os.path.join(cwd, expanded))


def translate_os_error(exc: OSError, path: str) -> FileOpError:
    """Map an OSError to a stable wire code and a message naming the path."""
    reason = exc.strerror or str(exc)
    match exc.errno:
        case errno.ENOENT:
            return FileOpError(codes.FILE_NOT_FOUND, f"no such file: {path}")
        case errno.EISDIR:
            return FileOpError(codes.IS_A_DIRECTORY, f"{path} is a directory")
        case errno.ENOTDIR:
            return FileOpError(
                codes.INVALID_ARGUMENT, f"a parent of {path} is a file, not a directory ({reason})"
            )
        case errno.EACCES | errno.EPERM | errno.EROFS:
            return FileOpError(codes.PERMISSION_DENIED, f"cannot access {path}: {reason}")
        case _:
            return FileOpError(codes.INTERNAL, f"I/O error on {path}: {reason}")


def guarded(path: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a sync file operation, turning what the OS and Python raise into FileOpError codes."""
    try:
        return fn(*args)
    except OSError as exc:
        raise translate_os_error(exc, path) from exc
    except ValueError as exc:
        if "null" in str(exc):  # "embedded null byte", from every os call given a NUL
            raise FileOpError(codes.INVALID_ARGUMENT, f"path {path!r} contains a NUL byte") from exc
        raise
    except MemoryError:
        raise FileOpError(codes.SANDBOX_FAILED, f"the sandbox ran out of memory working on {path}") from None


def directory_listing(path: str, limit: int = _LISTING_LIMIT) -> str:
    """A short sorted listing of a directory's entries, subdirectories marked with '/'."""
    try:
        with os.scandir(path) as it:
            entries = sorted(e.name + ("/" if e.is_dir() else "") for e in it)
    except OSError:
        return "(its entries could not be listed)"
    if not entries:
        return "(it is empty)"
    shown = ", ".join(entries[:limit])
    more = len(entries) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


def require_regular_file(path: str) -> os.stat_result:
    """stat ``path`` and refuse directories and special files (FIFOs, devices) with the right code."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise translate_os_error(exc, path) from exc
    if os.path.isdir(path):
        raise FileOpError(
            codes.IS_A_DIRECTORY, f"{path} is a directory, not a file. It contains: {directory_listing(path)}"
        )
    if not os.path.isfile(path):
        raise FileOpError(codes.INVALID_ARGUMENT, f"{path} is not a regular file (a device, FIFO or socket)")
    return st


def looks_binary(head: bytes) -> bool:
    return b"\0" in head[:SNIFF_BYTES]


def binary_error(path: str, detail: str) -> FileOpError:
    return FileOpError(
        codes.BINARY_FILE,
        f"{path} is not UTF-8 text ({detail}); read its raw bytes with file_read encoding='base64'",
    )


def decode_text(data: bytes, path: str) -> str:
    """Decode UTF-8 strictly; NUL bytes in the head or invalid UTF-8 mean a binary file."""
    if looks_binary(data):
        raise binary_error(path, f"it has NUL bytes in its first {SNIFF_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise binary_error(path, f"invalid UTF-8 at byte {exc.start}") from exc


def count_lines(text: str) -> int:
    """Lines as an editor counts them: a final line without a newline still counts."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same directory, then os.replace.

    Parent directories are created; an existing file keeps its mode (and its owner where
    permitted); writing through a symlink replaces the link's target, not the link.
    """
    target = os.path.realpath(path) if os.path.islink(path) else path
    if os.path.isdir(target):
        raise FileOpError(codes.IS_A_DIRECTORY, f"{path} is a directory; give the path of a file inside it")
    parent = os.path.dirname(target) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError as exc:
        raise FileOpError(codes.INVALID_ARGUMENT, f"cannot create {path}: a parent path is a file") from exc
    except OSError as exc:
        raise translate_os_error(exc, path) from exc
    try:
        existing: os.stat_result | None = os.stat(target)
    except OSError:
        existing = None
    tmp = os.path.join(parent, f".{os.path.basename(target)}.{os.urandom(6).hex()}.tmp")
    try:
        _write_new(tmp, data, existing)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise translate_os_error(exc, path) from exc
        raise


def _write_new(tmp: str, data: bytes, existing: os.stat_result | None) -> None:
    # 0o666 lets the process umask decide a new file's mode, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if existing is not None:
            if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, existing.st_uid, existing.st_gid)
                except OSError:
                    pass  # not permitted: the replacement becomes ours
            os.fchmod(fd, existing.st_mode & 0o7777)  # after fchown, which may clear setuid bits
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- reading


def _check_range(start: int | None, end: int | None) -> None:
    if start is not None and start < 1:
        raise FileOpError(codes.INVALID_ARGUMENT, f"start_line must be 1 or more (lines are numbered from 1), got {start}")
    if end is not None and end < 1:
        raise FileOpError(codes.INVALID_ARGUMENT, f"end_line must be 1 or more (lines are numbered from 1), got {end}")
    if start is not None and end is not None and end < start:
        raise FileOpError(codes.INVALID_ARGUMENT, f"end_line {end} is before start_line {start}")


def _read_base64(path: str, size: int, max_bytes: int) -> tuple[str, int | None]:
    encoded_size = 4 * ((size + 2) // 3)
    if encoded_size > max_bytes:
        raise FileOpError(
            codes.FILE_TOO_LARGE,
            f"{path} is {size} bytes, {encoded_size} bytes as base64, over the {max_bytes}-byte limit; "
            "copy parts of it with a shell command (e.g. split or dd) and read those",
        )
    with open(path, "rb") as f:
        data = f.read(size + 1)
    if 4 * ((len(data) + 2) // 3) > max_bytes:  # grew since stat
        raise FileOpError(codes.FILE_TOO_LARGE, f"{path} grew past the {max_bytes}-byte limit while being read")
    return base64.b64encode(data).decode("ascii"), None


def _read_whole_text(path: str, size: int, max_bytes: int) -> tuple[str, int]:
    if size > max_bytes:
        raise FileOpError(
            codes.FILE_TOO_LARGE,
            f"{path} is {size} bytes, over the {max_bytes}-byte limit; "
            "read it in parts with start_line and end_line",
        )
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since stat
        raise FileOpError(
            codes.FILE_TOO_LARGE,
            f"{path} is over the {max_bytes}-byte limit; read it in parts with start_line and end_line",
        )
    text = decode_text(data, path)
    return text, count_lines(text)


def _read_text_range(path: str, start: int, end: int | None, max_bytes: int) -> tuple[str, int]:
    """Keep lines start..end and count them all, reading blocks: a line is never read whole.

    Fails with file_too_large as soon as the kept lines pass ``max_bytes``, naming the line.
    """
    kept = bytearray()
    line = 1  # the line the next byte belongs to
    last = b"\n"  # the file's last byte so far; "\n" for an empty file
    with open(path, "rb") as f:
        if looks_binary(f.read(SNIFF_BYTES)):
            raise binary_error(path, f"it has NUL bytes in its first {SNIFF_BYTES} bytes")
        f.seek(0)
        while block := f.read(BLOCK_BYTES):
            last = block[-1:]
            newlines = block.count(b"\n")
            if line + newlines < start or (end is not None and line > end):
                line += newlines  # nothing of this block is kept
                continue
            pos = 0
            while pos < len(block):
                nl = block.find(b"\n", pos)
                stop = len(block) if nl < 0 else nl + 1
                if line >= start:
                    kept += block[pos:stop]
                    if len(kept) > max_bytes:
                        raise _range_too_large(path, start, line, max_bytes)
                if nl < 0:
                    break
                line += 1
                pos = stop
                if end is not None and line > end:
                    line += block.count(b"\n", pos)
                    break
    total = line - 1 if last == b"\n" else line
    if start > max(total, 1):
        raise FileOpError(
            codes.INVALID_ARGUMENT, f"start_line {start} is beyond the end of {path}, which has {total} lines"
        )
    return decode_text(bytes(kept), path), total


def _range_too_large(path: str, start: int, line: int, max_bytes: int) -> FileOpError:
    if line == start:
        return FileOpError(
            codes.FILE_TOO_LARGE,
            f"line {line} of {path} alone is over the {max_bytes}-byte limit; read a part of it with a "
            f"shell command (e.g. cut -c1-100000, or dd with skip= and count=)",
        )
    return FileOpError(
        codes.FILE_TOO_LARGE,
        f"lines {start}-{line} of {path} pass the {max_bytes}-byte limit at line {line}; "
        f"ask for fewer lines with start_line and end_line (lines {start}-{line - 1} fit)",
    )


def _read_sync(path: str, action: FileRead, max_bytes: int) -> tuple[str, int | None]:
    ranged = action.start_line is not None or action.end_line is not None
    if action.encoding == "base64" and ranged:
        raise FileOpError(
            codes.INVALID_ARGUMENT,
            "start_line and end_line only apply to encoding='text'; base64 reads return the whole file",
        )
    _check_range(action.start_line, action.end_line)
    st = require_regular_file(path)
    if action.encoding == "base64":
        return _read_base64(path, st.st_size, max_bytes)
    if ranged:
        return _read_text_range(path, action.start_line or 1, action.end_line, max_bytes)
    return _read_whole_text(path, st.st_size, max_bytes)


# ----------------------------------------------------------------------------- writing


def _write_sync(path: str, action: FileWrite) -> int:
    data = _content_bytes(action)
    if action.append:
        append_to(path, data)
    else:
        atomic_write(path, data)
    return len(data)


def _content_bytes(action: FileWrite) -> bytes:
    if action.encoding == "base64":
        try:
            data = base64.b64decode(action.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FileOpError(codes.INVALID_ARGUMENT, f"content is not valid base64: {exc}") from exc
    else:
        try:
            data = action.content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FileOpError(codes.INVALID_ARGUMENT, f"content cannot be encoded as UTF-8: {exc}") from exc
    return data


def append_to(path: str, data: bytes) -> None:
    """Add ``data`` at the end of ``path`` (O_APPEND), creating it and its parents if missing.

    Not atomic, unlike ``atomic_write``: a reader may see part of the data, and a failure halfway
    (disk full) leaves what was written. That is the price of writing a big file in parts.
    """
    if os.path.isdir(path):
        raise FileOpError(codes.IS_A_DIRECTORY, f"{path} is a directory; give the path of a file inside it")
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError as exc:
        raise FileOpError(codes.INVALID_ARGUMENT, f"cannot create {path}: a parent path is a file") from exc
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- verbs


async def file_read(action: FileRead, *, cwd: str, session_id: str, max_bytes: int = 900_000) -> FileContent | Error:
    """Read a file as UTF-8 text (optionally a 1-based inclusive line range) or as base64."""
    path = resolve_path(action.path, cwd)
    try:
        content, total = await offload.run(guarded, path, _read_sync, path, action, max_bytes)
    except FileOpError as exc:
        return Error(id=new_id(), cause=action.id, session_id=session_id, code=exc.code, message=exc.message)
    return FileContent(
        id=new_id(), cause=action.id, session_id=session_id, path=path,
        content=content, encoding=action.encoding, total_lines=total,
    )


async def file_write(action: FileWrite, *, cwd: str, session_id: str) -> FileWritten | Error:
    """Write exactly the given bytes (base64-decoded first if asked).

    The file is replaced atomically (a reader sees the old content or the new, never a mix), or
    with ``append`` the bytes are added at its end, which is not atomic (see ``append_to``).
    ``size`` in the answer is the number of bytes this action wrote.
    """
    path = resolve_path(action.path, cwd)
    try:
        size = await offload.run(guarded, path, _write_sync, path, action)
    except FileOpError as exc:
        return Error(id=new_id(), cause=action.id, session_id=session_id, code=exc.code, message=exc.message)
    return FileWritten(id=new_id(), cause=action.id, session_id=session_id, path=path, size=size)
