"""The open file and its window: open_file, goto_line, scroll_down, scroll_up, create_file.

One kernel has one current file and one current line, as one editor window would; every skill that
shows a file moves them. Texts are OpenHands' (``[File: ...]``, ``n|text``, ``(k more lines above)``).
"""

from __future__ import annotations

import os

from ._text import SkillError, as_path, line_count, print_error, read_text, split_lines

WINDOW = 100
"""Lines a window shows (a centred window shows one more: the line and half a window either side)."""
_SCROLL_HINT = "[Use `scroll_down` to view the next 100 lines of the file!]"
_NO_FILE = "No file open. Use the open_file function first."


class _State:
    """The kernel's current file (an absolute path, or None) and its current line."""

    file: str | None = None
    line: int = 1


state = _State()


def open_file(path: str, line_number: int | None = 1, context_lines: int | None = WINDOW) -> None:
    """Opens the file at the given path and shows a window of its numbered lines.

    The window shows `context_lines` lines (at most 100, the default) around `line_number` (default
    1, the start of the file). The file becomes the current file: `goto_line`, `scroll_down`,
    `scroll_up` and `search_file` work on it. Read a long file whole with repeated `scroll_down`
    before editing it.

    Args:
        path: str: The path of the file to open; an absolute path is best.
        line_number: int | None = 1: The line to show, centred when the file allows.
        context_lines: int | None = 100: How many lines the window shows, up to 100.
    """
    path = as_path(path)
    if not os.path.isfile(path):
        print_error(f"File {path} not found.")
        return
    try:
        text = read_text(path)
    except (SkillError, OSError) as exc:
        print_error(_message(exc))
        return
    total = line_count(text)
    if line_number is None:
        line_number = 1
    if not _is_int(line_number) or not 1 <= line_number <= total:
        print_error(f"Line number must be between 1 and {total}")
        return
    if not _is_int(context_lines) or context_lines < 1:
        context_lines = WINDOW
    state.file, state.line = os.path.abspath(path), line_number
    output = header(state.file, total) + window(text, line_number, min(context_lines, WINDOW))
    if output.endswith("more lines below)"):
        output += "\n" + _SCROLL_HINT
    print(output)


def goto_line(line_number: int) -> None:
    """Moves the window of the current file to show the given line, centred.

    Args:
        line_number: int: The line to show.
    """
    text = _current_text()
    if text is None:
        return
    total = line_count(text)
    if not _is_int(line_number) or not 1 <= line_number <= total:
        print_error(f"Line number must be between 1 and {total}.")
        return
    print(header(state.file, total) + window(text, line_number, WINDOW))


def scroll_down() -> None:
    """Moves the window of the current file down by 100 lines.

    Args:
        None
    """
    _scroll(WINDOW)


def scroll_up() -> None:
    """Moves the window of the current file up by 100 lines.

    Args:
        None
    """
    _scroll(-WINDOW)


def create_file(filename: str) -> None:
    """Creates a new file holding one empty line, and opens it.

    Add its content with `append_file` (or `insert_content_at_line`).

    Args:
        filename: str: The path of the file to create; it must not exist yet.
    """
    filename = as_path(filename)
    if os.path.lexists(filename):
        print_error(f"File '{filename}' already exists.")
        return
    try:
        with open(filename, "x", encoding="utf-8") as f:
            f.write("\n")
    except OSError as exc:
        print_error(f"Could not create file {filename}: {exc.strerror or exc}")
        return
    open_file(filename)
    print(f"[File {filename} created.]")


# --------------------------------------------------------------------------- rendering


def header(path: str, total: int, *, after_edit: bool = False) -> str:
    return f"[File: {path} ({total} lines total{' after edit' if after_edit else ''})]\n"


def window(text: str, line: int, size: int, *, from_line: bool = False) -> str:
    """Numbered lines around ``line`` (clamped to the file), which becomes the current line.

    Centred on it, or starting at it (``from_line``, as a scroll does); a window that touches either
    end of the file is filled from that end. The first and last rows say what lies beyond.
    """
    lines = split_lines(text) or [""]
    total = len(lines)
    state.line = line = max(1, min(line, total))
    if from_line:
        start, end = line, min(total, line + size)
    else:
        half = max(1, size // 2)
        start, end = max(1, line - half), min(total, line + half)
    if start == 1:
        end = min(total, size)
    if end == total:
        start = max(1, total - size + 1)
    rows = ["(this is the beginning of the file)" if start == 1 else f"({start - 1} more lines above)"]
    rows += [f"{n}|{lines[n - 1].removesuffix(chr(10)).removesuffix(chr(13))}" for n in range(start, end + 1)]
    rows.append("(this is the end of the file)" if end == total else f"({total - end} more lines below)")
    return "\n".join(rows)


def _scroll(by: int) -> None:
    text = _current_text()
    if text is None:
        return
    total = line_count(text)
    target = max(1, min(state.line + by, total))
    print(header(state.file, total) + window(text, target, WINDOW, from_line=True))


def _current_text() -> str | None:
    """The current file's text, or None after printing why there is none."""
    if state.file is None or not os.path.isfile(state.file):
        print_error(_NO_FILE)
        return None
    try:
        return read_text(state.file)
    except (SkillError, OSError) as exc:
        print_error(_message(exc))
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"Could not read {exc.filename}: {exc.strerror or exc}"
    return str(exc)
