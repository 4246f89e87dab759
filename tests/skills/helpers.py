"""Files the skill tests read: numbered lines, as OpenHands' own tests make them."""

from __future__ import annotations

MSG_FILE_UPDATED = (
    "[File updated (edited at line {line_number}). Please review the changes and make sure they are correct "
    "(correct indentation, no duplicate lines, etc). Edit the file again if necessary.]"
)
SCROLL_HINT = "[Use `scroll_down` to view the next 100 lines of the file!]\n"


def numbered(path, n: int) -> str:
    """``Line 1`` .. ``Line n``, no final newline; returns the path as a string."""
    path.write_text("\n".join(f"Line {i}" for i in range(1, n + 1)))
    return str(path)


def window(start: int, end: int, total: int, *, text=lambda i: f"Line {i}") -> str:
    """The rows a window of lines start..end of a ``total``-line file prints."""
    out = "(this is the beginning of the file)\n" if start == 1 else f"({start - 1} more lines above)\n"
    out += "".join(f"{i}|{text(i)}\n" for i in range(start, end + 1))
    out += "(this is the end of the file)\n" if end == total else f"({total - end} more lines below)\n"
    return out
