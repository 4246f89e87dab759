"""Line-oriented edits: edit_file_by_replace, insert_content_at_line, append_file.

Each writes the file atomically, leaves it ending in a newline, makes it the current file and shows
the window around the edit with OpenHands' ``[File updated (edited at line N). ...]`` note. There is
no lint step: the edit is applied as given.
"""

from __future__ import annotations

import os
import re

from ._text import SkillError, as_path, print_error, read_text, split_lines, write_text
from ._window import WINDOW, header, state, window

MSG_FILE_UPDATED = (
    "[File updated (edited at line {line_number}). Please review the changes and make sure they are correct "
    "(correct indentation, no duplicate lines, etc). Edit the file again if necessary.]"
)
_NOT_UNIQUE = "`to_replace` appears more than once, please include enough lines to make code in `to_replace` unique."


def edit_file_by_replace(file_name: str, to_replace: str, new_content: str) -> None:
    """Edits an existing file: replaces the one occurrence of `to_replace` with `new_content`.

    `to_replace` must match the file exactly, character for character (comments, docstrings and
    indentation included), and occur once: include enough lines to make it unique. It must not be
    empty, and `new_content` must differ from it. When nothing matches exactly, a match that
    differs only in spaces and tabs within lines is used, and the lines it covers are replaced.
    An empty `new_content` removes whole lines matched by `to_replace`.
    To write a new file, use `create_file` then `append_file`.

    For example, in a file holding the lines "line 1", "line 2", "line 2", "line 3",
    edit_file_by_replace('/workspace/example.txt', to_replace='line 2\\nline 3', new_content='new line\\nline 3')
    leaves "line 1", "line 2", "new line", "line 3": only the second "line 2" is part of the unique match.

    Args:
        file_name: str: The path of the file to edit.
        to_replace: str: The exact text to replace.
        new_content: str: The text to put in its place.
    """
    file_name = as_path(file_name)
    if not isinstance(to_replace, str) or to_replace.strip() == "":
        print_error("`to_replace` must not be empty.")
        return
    if to_replace == new_content:
        print_error("`to_replace` and `new_content` must be different.")
        return
    if not os.path.isfile(file_name):
        print_error(f"File {file_name} not found.")
        return
    new_content = str(new_content or "")
    try:
        text = read_text(file_name)
        if text.count(to_replace) > 1:
            raise SkillError(_NOT_UNIQUE)
        pos = text.find(to_replace)
        if pos >= 0:
            updated, line = _replace_exact(text, pos, to_replace, new_content)
        else:
            found = _replace_ignoring_spaces(text, to_replace, new_content)
            if found is None:
                print(f"[No exact match found in {file_name} for\n```\n{to_replace}\n```\n]")
                return
            updated, line = found
        _finish(file_name, updated, line)
    except (SkillError, OSError) as exc:
        print_error(_message(exc))


def insert_content_at_line(file_name: str, line_number: int, content: str) -> None:
    """Inserts content as new lines at the given line number of a file.

    The content becomes line `line_number` onwards; the line that was there, and every line after
    it, move down. No existing line is changed. A line number one past the last line appends.

    For example, in a file holding the lines "line 1", "line 2", "line 3",
    insert_content_at_line('file.txt', 2, 'new line') leaves "line 1", "new line", "line 2", "line 3".

    Args:
        file_name: str: The path of the file to edit.
        line_number: int: Where the content starts, from 1.
        content: str: The lines to insert.
    """
    file_name = as_path(file_name)
    if not _check_target(file_name):
        return
    try:
        lines = split_lines(read_text(file_name))
        if not isinstance(line_number, int) or isinstance(line_number, bool) or not 1 <= line_number <= len(lines) + 1:
            raise SkillError(
                f"Invalid line number: {line_number}. Line numbers must be between 1 and {len(lines) + 1} (inclusive)."
            )
        block = _as_lines(str(content or ""))
        if _is_blank(lines):
            updated = block
        else:
            if lines[-1] and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            updated = "".join(lines[: line_number - 1]) + block + "".join(lines[line_number - 1 :])
        _finish(file_name, updated, line_number)
    except (SkillError, OSError) as exc:
        print_error(_message(exc))


def append_file(file_name: str, content: str) -> None:
    """Appends content to the end of a file, as new lines; the way to fill a file after `create_file`.

    Args:
        file_name: str: The path of the file to edit.
        content: str: The lines to append.
    """
    file_name = as_path(file_name)
    if not _check_target(file_name):
        return
    try:
        text = read_text(file_name)
        lines = split_lines(text)
        content = str(content or "")
        if _is_blank(lines):
            updated = content
        else:
            updated = (text if text.endswith("\n") else text + "\n") + content
        _finish(file_name, updated, max(1, len(lines)))
    except (SkillError, OSError) as exc:
        print_error(_message(exc))


# ------------------------------------------------------------------------------ helpers


def _replace_exact(text: str, pos: int, to_replace: str, new_content: str) -> tuple[str, int]:
    """Replace the match at ``pos``; the text around it on its first and last lines stays.

    New content that ends inside a line is ended with a newline, unless the match itself ended
    inside a line. A match of whole lines replaced by nothing removes those lines.
    """
    start = text.rfind("\n", 0, pos) + 1
    stop = text.find("\n", pos + len(to_replace) - 1 if to_replace.endswith("\n") else pos + len(to_replace))
    stop = len(text) if stop < 0 else stop + 1
    before, after = text[start:pos], text[pos + len(to_replace) : stop]
    if not new_content and not before and after.strip("\r\n") == "":
        replacement = ""
    else:
        replacement = before + new_content + after
        if not replacement.endswith("\n"):
            replacement += "\n"
    return text[:start] + replacement + text[stop:], text.count("\n", 0, pos) + 1


def _replace_ignoring_spaces(text: str, to_replace: str, new_content: str) -> tuple[str, int] | None:
    """Replace the whole lines that match ``to_replace`` once spaces and tabs are ignored, or None."""
    squeezed, needle = _squeeze(text), _squeeze(to_replace).strip("\n")
    pos = squeezed.find(needle) if needle else -1
    if pos < 0:
        return None
    if squeezed.count(needle) > 1:
        raise SkillError(_NOT_UNIQUE)
    first = squeezed.count("\n", 0, pos) + 1  # squeezing keeps every newline, so line numbers hold
    last = first + needle.count("\n")
    lines = split_lines(text)
    block = _as_lines(new_content) if new_content else ""
    return "".join(lines[: first - 1]) + block + "".join(lines[last:]), first


def _squeeze(text: str) -> str:
    return re.sub(r"[^\S\n]+", "", text)


def _check_target(file_name: str) -> bool:
    """The checks before an insert or append, printed as OpenHands prints them."""
    if not isinstance(file_name, str) or not file_name.strip() or "\0" in file_name:
        print_error("Invalid file name.")
        return False
    if not os.path.exists(file_name):
        print_error("Invalid path or file name.")
        return False
    if not os.path.isfile(file_name):
        print_error(f"File {file_name} not found.")
        return False
    return True


def _finish(file_name: str, updated: str, line: int) -> None:
    """Write the edit, make the file current, and show the window around ``line``."""
    if not updated.endswith("\n"):
        updated += "\n"
    write_text(file_name, updated)
    state.file = os.path.abspath(file_name)
    total = max(1, len(split_lines(updated)))
    shown = window(updated, line, WINDOW)  # clamps the current line to the file
    print(header(state.file, total, after_edit=True) + shown + "\n" + MSG_FILE_UPDATED.format(line_number=state.line))


def _as_lines(content: str) -> str:
    return content if content.endswith("\n") else content + "\n"


def _is_blank(lines: list[str]) -> bool:
    """No lines, or a single blank one: what create_file leaves, which new content replaces."""
    return not lines or (len(lines) == 1 and not lines[0].strip())


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"Could not edit {exc.filename}: {exc.strerror or exc}"
    return str(exc)
