"""Reading and writing the text files the skills show and edit, and printing their errors."""

from __future__ import annotations

import os

SNIFF_BYTES = 8192
"""A file with a NUL byte in this much of its head is binary: never shown, searched or edited."""


class SkillError(Exception):
    """What a skill prints as ``ERROR: <message>`` instead of raising into the agent's cell."""


def as_path(value: object) -> str:
    """A path argument as text; anything not a path becomes its str (so None reads "None", not a TypeError)."""
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else str(value)


def print_error(message: str) -> None:
    print(f"ERROR: {message}")


def is_binary(path: str) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(SNIFF_BYTES)


def read_text(path: str) -> str:
    """The file's text; bytes that are not UTF-8 become U+FFFD, line endings are kept as they are."""
    if is_binary(path):
        raise SkillError(f"File {path} is a binary file; only text files can be opened or edited.")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def split_lines(text: str) -> list[str]:
    """Lines with their '\\n' kept; no empty line after a final newline."""
    lines = text.split("\n")
    last = lines.pop()
    rows = [line + "\n" for line in lines]
    if last:
        rows.append(last)
    return rows


def line_count(text: str) -> int:
    """Lines as the window counts them: an empty file still shows one (empty) line."""
    return max(1, len(split_lines(text)))


def write_text(path: str, text: str) -> None:
    """Replace the file atomically (temp file beside it, then rename), keeping its mode."""
    target = os.path.realpath(path)  # through a symlink, its target is replaced, not the link
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.urandom(6).hex()}.tmp")
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = None
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
