"""The str_replace editor coding agents use: view, create, str_replace, insert and undo_edit.

Files are UTF-8 text edited as exact strings: nothing is expanded or normalised, a file's final
newline (or its absence) is kept, and every write is atomic. Each command answers with text a
model can act on: a numbered view, or a message with a numbered snippet of the edited region.
"""

from __future__ import annotations

import codecs
import difflib
import os
import threading
from typing import NamedTuple, assert_never

from protocol import Error, FileEdit, FileEdited, codes, new_id

from ._files import (
    BLOCK_BYTES,
    SNIFF_BYTES,
    FileOpError,
    atomic_write,
    binary_error,
    count_lines,
    decode_text,
    guarded,
    looks_binary,
    require_regular_file,
    translate_os_error,
)
from ._history import DirHistory, MemoryHistory, Steps
from ._offload import offload

HISTORY_STEPS = 20
"""Undo steps kept per file."""
MAX_VIEW_CHARS = 16_000
"""Views and snippets longer than this are cut at a line boundary, with a note."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Files larger than this are not loaded (nor viewed) at all."""
DIFF_MAX_CHARS = 4 * 1024 * 1024
"""Past this much text (before and after together) the diff is left out: difflib holds every line."""
_ROW_CAP_BYTES = 4 * MAX_VIEW_CHARS + 4
"""A viewed line is read up to this many bytes, which always holds more than MAX_VIEW_CHARS characters."""
SNIPPET_CONTEXT = 4
"""Lines shown on each side of an edited region."""
_MAX_LISTED_LINES = 20
_REVIEW = "Review the change above; if it is not what you intended, edit again or run undo_edit."


class _Outcome(NamedTuple):
    content: str
    diff: str = ""


class Editor:
    """One session's editor: runs file_edit commands and keeps per-file undo history."""

    def __init__(
        self, *, session_id: str, max_bytes: int = 900_000, history_steps: int = HISTORY_STEPS,
        history_dir: str | None = None,
    ) -> None:
        """``history_dir`` keeps the undo history in files there, shared with every editor (in any
        process) given the same directory; None keeps it in this editor's memory."""
        self._session_id = session_id
        self._max_bytes = max_bytes
        self._history = (
            DirHistory(history_dir, history_steps) if history_dir is not None else MemoryHistory(history_steps)
        )
        # a thread lock, not an asyncio one: a cancelled edit's thread still runs to its end
        self._lock = threading.Lock()

    async def edit(self, action: FileEdit) -> FileEdited | Error:
        """Run one command off the event loop; failures come back as an Error with a stable code."""
        try:
            path = _absolute(action.path)
            outcome = await offload.run(guarded, path, self._run_locked, path, action)
        except FileOpError as exc:
            return self._error(action, exc)
        return self._edited(action, path, outcome)

    def edit_sync(self, action: FileEdit) -> FileEdited | Error:
        """``edit`` on the calling thread, for callers without an event loop (a kernel cell)."""
        try:
            path = _absolute(action.path)
            outcome = guarded(path, self._run_locked, path, action)
        except FileOpError as exc:
            return self._error(action, exc)
        return self._edited(action, path, outcome)

    def _error(self, action: FileEdit, exc: FileOpError) -> Error:
        return Error(id=new_id(), cause=action.id, session_id=self._session_id, code=exc.code, message=exc.message)

    def _edited(self, action: FileEdit, path: str, outcome: _Outcome) -> FileEdited:
        return FileEdited(
            id=new_id(), cause=action.id, session_id=self._session_id, path=path,
            content=outcome.content, diff=self._cap_diff(outcome),
        )

    # ------------------------------------------------------------------ commands (sync)

    def _run_locked(self, path: str, action: FileEdit) -> _Outcome:
        if action.command == "view":
            return _view(path, action.view_range)  # reads no history
        with self._lock, self._history.steps(path) as steps:  # one command at a time per history
            return self._run(path, action, steps)

    def _run(self, path: str, action: FileEdit, steps: Steps) -> _Outcome:
        match action.command:
            case "view":
                return _view(path, action.view_range)
            case "create":
                return self._create(path, action.file_text, steps)
            case "str_replace":
                return self._str_replace(path, action.old_str, action.new_str, steps)
            case "insert":
                return self._insert(path, action.insert_line, action.new_str, steps)
            case "undo_edit":
                return self._undo(path, steps)
            case _:
                assert_never(action.command)

    def _create(self, path: str, file_text: str | None, steps: Steps) -> _Outcome:
        if file_text is None:
            raise _invalid("the create command needs file_text: the full content of the new file")
        if os.path.isdir(path):
            raise FileOpError(codes.IS_A_DIRECTORY, f"{path} is a directory; create needs the path of a new file")
        if os.path.lexists(path):
            raise FileOpError(
                codes.EDIT_FAILED,
                f"{path} already exists and create never overwrites a file. Use str_replace or insert "
                "to change it, or file_write to replace its whole content.",
            )
        _write(path, file_text)
        steps.push(None)
        n_lines = count_lines(file_text)
        return _Outcome(f"Created {path} ({n_lines} line{'' if n_lines == 1 else 's'}).", _diff(path, None, file_text))

    def _str_replace(self, path: str, old_str: str | None, new_str: str | None, steps: Steps) -> _Outcome:
        if old_str is None:
            raise _invalid("the str_replace command needs old_str: the exact text to replace")
        if old_str == "":
            raise _invalid("old_str is empty; give the exact text to replace (use insert to add new lines)")
        new_str = new_str or ""
        if old_str == new_str:
            raise _invalid("old_str and new_str are identical, so the edit would change nothing")
        text = _load(path, for_edit=True)
        starts = _occurrences(text, old_str)
        if not starts:
            raise FileOpError(codes.EDIT_FAILED, _no_match_message(path, text, old_str))
        if len(starts) > 1:
            lines = sorted({text.count("\n", 0, pos) + 1 for pos in starts})
            raise FileOpError(
                codes.EDIT_FAILED,
                f"old_str occurs {len(starts)} times in {path}, starting at lines {_list_numbers(lines)}. "
                "It must occur exactly once: include more of the surrounding lines to single one out.",
            )
        pos = starts[0]
        updated = text[:pos] + new_str + text[pos + len(old_str) :]
        _write(path, updated)
        steps.push(text)
        first = text.count("\n", 0, pos) + 1
        last = first + new_str.count("\n")
        head = f"Edited {path}: replaced the one occurrence of old_str, which started at line {first}."
        return _Outcome(_with_snippet(head, updated, first, last), _diff(path, text, updated))

    def _insert(self, path: str, insert_line: int | None, new_str: str | None, steps: Steps) -> _Outcome:
        if insert_line is None:
            raise _invalid("the insert command needs insert_line: 0 inserts before the first line, N after line N")
        if new_str is None:
            raise _invalid("the insert command needs new_str: the text to insert")
        text = _load(path, for_edit=True)
        n_lines = count_lines(text)
        if not 0 <= insert_line <= n_lines:
            raise _invalid(
                f"insert_line {insert_line} is out of range: {path} has {n_lines} lines, so insert_line "
                f"must be in [0, {n_lines}] (0 inserts before the first line, N after line N)"
            )
        updated, added = _inserted(text, insert_line, new_str)
        _write(path, updated)
        steps.push(text)
        where = f"after line {insert_line}" if insert_line else "at the start"
        head = f"Inserted {added} line{'s' if added != 1 else ''} {where} of {path}."
        return _Outcome(
            _with_snippet(head, updated, insert_line + 1, insert_line + max(added, 1)), _diff(path, text, updated)
        )

    def _undo(self, path: str, steps: Steps) -> _Outcome:
        if not steps:
            raise FileOpError(
                codes.EDIT_FAILED,
                f"no edit history for {path}: this editor has not changed it, or every change was undone already",
            )
        previous = steps.last()
        current = _current_text(path)
        if previous is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise translate_os_error(exc, path) from exc
            content = f"Undid the create of {path}: the file was removed."
        else:
            _write(path, previous)
            content = f"Undid the last edit to {path}. Its content is now:\n{_render_file(previous)}"
        steps.pop()
        return _Outcome(content, _diff(path, current, previous))

    # ---------------------------------------------------------------------------- state

    def _cap_diff(self, outcome: _Outcome) -> str:
        """Keep content + diff within max_bytes so the observation fits on the wire."""
        budget = self._max_bytes - len(outcome.content.encode()) - 200
        encoded = outcome.diff.encode()
        if len(encoded) <= budget:
            return outcome.diff
        kept = encoded[: max(budget, 0)].decode("utf-8", errors="ignore")
        kept = kept[: kept.rfind("\n") + 1]
        return kept + f"[diff truncated: it is {len(encoded)} bytes; view the file to see the result]\n"


# ------------------------------------------------------------------------------ views


def _view(path: str, view_range: list[int] | None) -> _Outcome:
    if os.path.isdir(path):
        if view_range is not None:
            raise _invalid(f"view_range applies to files only, and {path} is a directory")
        return _Outcome(_list_directory(path))
    if view_range is not None and len(view_range) != 2:
        raise _invalid(f"view_range must be two integers [start, end], got {view_range}")
    _require_text_file(path, for_edit=False)
    first = max(view_range[0], 1) if view_range is not None else 1
    last = None if view_range is None or view_range[1] == -1 else view_range[1]
    rows, n_lines = _scan_view(path, first, last)
    if view_range is None:
        if not n_lines:
            return _Outcome(f"{path} is empty.")
        first, last = 1, n_lines
    else:
        first, last = _check_view_range(path, view_range, n_lines)
    return _Outcome(_render(rows, first, last, n_lines))


def _scan_view(path: str, first: int, last: int | None) -> tuple[list[str], int]:
    """Lines first..last as far as one view can show them, and the file's line count.

    Reads blocks, never whole lines: a row is kept up to ``_ROW_CAP_BYTES`` and rows stop once a
    view's worth is held, so a 60 MB one-line file costs a block and a row. The whole file is still
    checked to be UTF-8, as a full load would.
    """
    rows: list[bytearray] = []
    row: bytearray | None = None
    budget = _ROW_CAP_BYTES  # bytes of rows held; more than any view renders
    line, offset, last_byte = 1, 0, b"\n"
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    with open(path, "rb") as f:
        if looks_binary(f.read(SNIFF_BYTES)):
            raise binary_error(path, f"it has NUL bytes in its first {SNIFF_BYTES} bytes")
        f.seek(0)
        while block := f.read(BLOCK_BYTES):
            try:
                utf8.decode(block)
            except UnicodeDecodeError as exc:
                raise binary_error(path, f"invalid UTF-8 at byte {offset + exc.start}") from exc
            offset += len(block)
            last_byte = block[-1:]
            newlines = block.count(b"\n")
            if line + newlines < first:
                line += newlines  # the view starts after this block
                continue
            pos = 0
            while pos < len(block):
                if budget <= 0 or (last is not None and line > last):
                    line += block.count(b"\n", pos)  # nothing more of this file is shown
                    break
                nl = block.find(b"\n", pos)
                stop = len(block) if nl < 0 else nl
                if line >= first:
                    if row is None:
                        row = bytearray()
                        rows.append(row)
                        budget -= 8  # what a row costs besides its text, so empty lines count too
                    piece = block[pos : min(stop, pos + _ROW_CAP_BYTES - len(row))]
                    row += piece
                    budget -= len(piece)
                if nl < 0:
                    break
                row = None
                line += 1
                pos = nl + 1
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise binary_error(path, f"invalid UTF-8 at byte {offset - 1}") from exc
    n_lines = line - 1 if last_byte == b"\n" else line
    # A row cut at its cap may end inside a character; the rest of the file is valid UTF-8.
    return [codecs.getincrementaldecoder("utf-8")("strict").decode(bytes(r)) for r in rows], n_lines


def _check_view_range(path: str, view_range: list[int], n_lines: int) -> tuple[int, int]:
    if len(view_range) != 2:
        raise _invalid(f"view_range must be two integers [start, end], got {view_range}")
    start, end = view_range
    if not 1 <= start <= n_lines:
        raise _invalid(
            f"view_range start {start} is out of range: {path} has {n_lines} lines, so start must be in [1, {n_lines}]"
        )
    if end == -1:
        return start, n_lines
    if end < start:
        raise _invalid(f"view_range end {end} is before its start {start}; use -1 as the end to read to the end of the file")
    if end > n_lines:
        raise _invalid(
            f"view_range end {end} is past the last line of {path} ({n_lines}); use {n_lines} or -1 to read to the end"
        )
    return start, end


def _render(lines: list[str], first: int, last: int, n_lines: int) -> str:
    """`cat -n` style rows for lines first..last (1-based; ``lines[0]`` is line ``first``), cut
    with a note past MAX_VIEW_CHARS. ``lines`` may stop early, once it holds more than a view."""
    rows: list[str] = []
    used = 0
    for number in range(first, min(last, first + len(lines) - 1) + 1):
        row = f"{number:6}\t{lines[number - first]}\n"
        if used + len(row) <= MAX_VIEW_CHARS:
            rows.append(row)
            used += len(row)
        elif rows:
            rows.append(
                f"[output truncated after line {number - 1} of {n_lines}: views are capped at "
                f"{MAX_VIEW_CHARS} characters; use view_range to see the rest, e.g. [{number}, {last}]]\n"
            )
            break
        else:
            rows.append(
                f"{row[:MAX_VIEW_CHARS]}\n[line {number} is longer than {MAX_VIEW_CHARS} characters and was cut; "
                "read it whole with file_read"
                + (f"; use view_range [{number + 1}, {last}] for the lines after it" if number < last else "")
                + "]\n"
            )
            break
    return "".join(rows)


def _render_file(text: str) -> str:
    n_lines = count_lines(text)
    return _render(_rows(text, 1, n_lines), 1, n_lines, n_lines) if n_lines else "(the file is empty)\n"


def _with_snippet(head: str, text: str, first: int, last: int) -> str:
    n_lines = count_lines(text)
    if not n_lines:
        return f"{head}\nThe file is now empty.\n{_REVIEW}"
    start = max(1, first - SNIPPET_CONTEXT)
    end = min(n_lines, max(last, first) + SNIPPET_CONTEXT)
    start = min(start, end)
    return f"{head} Lines {start}-{end} now read:\n{_render(_rows(text, start, end), start, end, n_lines)}{_REVIEW}"


def _rows(text: str, first: int, last: int) -> list[str]:
    """Lines first..last of ``text`` without splitting all of it: each cut past MAX_VIEW_CHARS,
    and no more of them than one view shows."""
    rows: list[str] = []
    pos = _line_offset(text, first)
    held = 0
    for _ in range(first, last + 1):
        if pos >= len(text) or held > MAX_VIEW_CHARS:
            break
        nl = text.find("\n", pos, pos + MAX_VIEW_CHARS + 1)
        if nl < 0:
            row = text[pos : pos + MAX_VIEW_CHARS + 1]
            nl = text.find("\n", pos + len(row))
        else:
            row = text[pos:nl]
        rows.append(row)
        held += len(row) + 8
        if nl < 0:
            break
        pos = nl + 1
    return rows


def _line_offset(text: str, number: int) -> int:
    """Where 1-based line ``number`` starts (``len(text)`` when the text has fewer lines)."""
    need, pos, step = number - 1, 0, 64 * 1024
    while need > 0:
        found = text.count("\n", pos, pos + step)
        if found < need:
            if pos + step >= len(text):
                return len(text)
            need, pos = need - found, pos + step
            continue
        for _ in range(need):
            pos = text.index("\n", pos) + 1
        break
    return pos


def _list_directory(path: str) -> str:
    rows: list[str] = []
    hidden = 0
    for name, is_dir in _entries(path, top=True):
        if name.startswith("."):
            hidden += 1
            continue
        full = os.path.join(path, name)
        rows.append(full + "/" if is_dir else full)
        if not is_dir:
            continue
        for sub, sub_is_dir in _entries(full, top=False):
            if sub.startswith("."):
                hidden += 1
                continue
            rows.append(os.path.join(full, sub) + ("/" if sub_is_dir else ""))
    body = "".join(f"{row}\n" for row in rows) or "(no visible entries)\n"
    if len(body) > MAX_VIEW_CHARS:
        body = body[: body.rfind("\n", 0, MAX_VIEW_CHARS) + 1]
        body += "[listing truncated; view a subdirectory to see more of it]\n"
    note = f"({hidden} hidden entr{'ies' if hidden != 1 else 'y'} not shown)\n" if hidden else ""
    return f"Files and directories in {path}, up to 2 levels deep (hidden entries left out):\n{body}{note}"


def _entries(path: str, *, top: bool) -> list[tuple[str, bool]]:
    """(name, is a directory) pairs, sorted; an unreadable subdirectory is shown empty."""
    try:
        with os.scandir(path) as it:
            return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
    except OSError as exc:
        if top:
            raise translate_os_error(exc, path) from exc
        return []


# ----------------------------------------------------------------------------- helpers


def _absolute(path: str) -> str:
    expanded = os.path.expanduser(path)
    if not os.path.isabs(expanded):
        raise _invalid(
            f"path must be absolute, but {path!r} is relative; did you mean {os.path.abspath(expanded)!r}?"
        )
    return os.path.normpath(expanded)


def _invalid(message: str) -> FileOpError:
    return FileOpError(codes.INVALID_ARGUMENT, message)


def _require_text_file(path: str, *, for_edit: bool) -> None:
    """Refuse missing, directory, special and oversized files with the codes a model acts on."""
    try:
        st = require_regular_file(path)
    except FileOpError as exc:
        if exc.code == codes.FILE_NOT_FOUND:
            hint = "; use the create command to make a new file" if for_edit else ""
            raise FileOpError(codes.FILE_NOT_FOUND, f"{path} does not exist{hint}") from exc
        raise
    if st.st_size > MAX_FILE_BYTES:
        raise _too_large(path, st.st_size)


def _too_large(path: str, size: int | None) -> FileOpError:
    what = f"{size} bytes" if size is not None else f"over {MAX_FILE_BYTES} bytes"
    return FileOpError(
        codes.FILE_TOO_LARGE, f"{path} is {what}, more than the editor handles ({MAX_FILE_BYTES}); use shell tools on it"
    )


def _load(path: str, *, for_edit: bool) -> str:
    """Read a UTF-8 text file; missing, directory, binary and oversized files are refused."""
    _require_text_file(path, for_edit=for_edit)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise translate_os_error(exc, path) from exc
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        raise _too_large(path, None)
    return decode_text(data, path)


def _current_text(path: str) -> str | None:
    """The file's text for an undo diff, or None when it is gone or not readable as text."""
    try:
        return _load(path, for_edit=False)
    except FileOpError:
        return None


def _write(path: str, text: str) -> None:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid(f"the new content cannot be encoded as UTF-8: {exc}") from exc
    atomic_write(path, data)


def _split_lines(text: str) -> list[str]:
    """Lines without their '\\n' (a '\\r' stays, as cat -n shows it); no phantom line after a final newline."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _occurrences(text: str, needle: str) -> list[int]:
    """Start offsets of every occurrence, overlapping ones included."""
    found: list[int] = []
    pos = text.find(needle)
    while pos != -1:
        found.append(pos)
        pos = text.find(needle, pos + 1)
    return found


def _list_numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_MAX_LISTED_LINES])
    more = len(numbers) - _MAX_LISTED_LINES
    return shown + (f" and {more} more" if more > 0 else "")


def _inserted(text: str, after: int, new_str: str) -> tuple[str, int]:
    """Insert new_str as whole lines after line `after`; the file's final-newline state is kept."""
    if not text:
        return new_str, count_lines(new_str)
    newline = "\r\n" if "\r\n" in text else "\n"
    block = new_str if new_str.endswith("\n") else new_str + newline
    added = block.count("\n")
    if after == count_lines(text) and not text.endswith("\n"):
        # after a last line that has no newline: end that line, and leave the new last line bare
        bare = block[: -len(newline)] if block.endswith(newline) else block[:-1]
        return text + newline + bare, added
    offset = 0
    for _ in range(after):
        offset = text.index("\n", offset) + 1
    return text[:offset] + block + text[offset:], added


def _no_match_message(path: str, text: str, old_str: str) -> str:
    message = (
        f"old_str did not appear verbatim in {path}. It must match the file exactly, including "
        "whitespace, indentation and line breaks; view the file and copy the text from it."
    )
    if "\r\n" in text and "\n" in old_str and "\r\n" not in old_str:
        message += " Note: the file has CRLF (\\r\\n) line endings, which old_str must include."
    stripped = old_str.strip()
    if stripped and stripped != old_str and stripped in text:
        message += " Its text without the leading and trailing whitespace does occur: check the whitespace at its ends."
    else:
        line = _same_text_other_indent(text, old_str)
        if line:
            message += (
                f" The same lines with different indentation start at line {line}: copy their indentation "
                "exactly (tabs and spaces differ)."
            )
    return message


def _same_text_other_indent(text: str, old_str: str) -> int | None:
    if len(text) > DIFF_MAX_CHARS:
        return None  # a hint is not worth splitting a huge file into lines
    wanted = [line.strip() for line in _split_lines(old_str)]
    if not wanted or not wanted[0]:
        return None
    have = [line.strip() for line in _split_lines(text)]
    for i in range(len(have) - len(wanted) + 1):
        if have[i] == wanted[0] and have[i : i + len(wanted)] == wanted:
            return i + 1
    return None


def _diff(path: str, before: str | None, after: str | None) -> str:
    """A unified diff; None on a side means the file does not exist there."""
    if len(before or "") + len(after or "") > DIFF_MAX_CHARS:
        return f"[no diff: the file is over {DIFF_MAX_CHARS} characters; the snippet above shows the change]\n"
    rows = difflib.unified_diff(
        _keep_line_breaks(before), _keep_line_breaks(after),
        fromfile=path if before is not None else "/dev/null",
        tofile=path if after is not None else "/dev/null",
    )
    out: list[str] = []
    for row in rows:
        out.append(row if row.endswith("\n") else row + "\n\\ No newline at end of file\n")
    return "".join(out)


def _keep_line_breaks(text: str | None) -> list[str]:
    """Split on '\\n' only (str.splitlines also splits on \\r, \\f and others), keeping the breaks."""
    if not text:
        return []
    lines = text.split("\n")
    last = lines.pop()
    rows = [line + "\n" for line in lines]
    if last:
        rows.append(last)
    return rows
