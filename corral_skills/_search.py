"""Finding things: search_dir, search_file, find_file, with OpenHands' texts.

Directory walks are sorted (the same tree gives the same answer) and skip hidden directories
(``.git`` and the like); search_dir also skips hidden and binary files.
"""

from __future__ import annotations

from collections.abc import Iterator
import os

from ._text import as_path, is_binary, print_error
from ._window import state

MAX_FILES = 100
"""search_dir lists matches from at most this many files; past it, it asks for a narrower search."""


def search_dir(search_term: str, dir_path: str = "./") -> None:
    """Searches for search_term in all files in a directory (the current one by default), recursively.

    Args:
        search_term: str: The text to search for.
        dir_path: str: The directory to search.
    """
    dir_path = as_path(dir_path)
    if not os.path.isdir(dir_path):
        print_error(f"Directory {dir_path} not found")
        return
    matches: list[str] = []
    files = 0
    for path in _walk(dir_path):
        if os.path.basename(path).startswith("."):
            continue
        found = _matching_lines(path, search_term)
        if not found:
            continue
        files += 1
        if files <= MAX_FILES:  # past it only the count matters
            matches += [f"{path} (Line {n}): {line}" for n, line in found]
    if not files:
        print(f'No matches found for "{search_term}" in {dir_path}')
        return
    if files > MAX_FILES:
        print(f'More than {files} files matched for "{search_term}" in {dir_path}. Please narrow your search.')
        return
    print(f'[Found {len(matches)} matches for "{search_term}" in {dir_path}]')
    for row in matches:
        print(row)
    print(f'[End of matches for "{search_term}" in {dir_path}]')


def search_file(search_term: str, file_path: str | None = None) -> None:
    """Searches for search_term in a file; without a file_path, in the current (last opened) file.

    Args:
        search_term: str: The text to search for.
        file_path: str | None: The file to search.
    """
    if file_path is None:
        file_path = state.file
    if file_path is None:
        print_error("No file specified or open. Use the open_file function first.")
        return
    file_path = as_path(file_path)
    if not os.path.isfile(file_path):
        print_error(f"File {file_path} not found.")
        return
    found = _matching_lines(file_path, search_term, skip_binary=False)
    if not found:
        print(f'[No matches found for "{search_term}" in {file_path}]')
        return
    print(f'[Found {len(found)} matches for "{search_term}" in {file_path}]')
    for n, line in found:
        print(f"Line {n}: {line}")
    print(f'[End of matches for "{search_term}" in {file_path}]')


def find_file(file_name: str, dir_path: str = "./") -> None:
    """Finds the files whose name contains file_name in a directory (the current one by default), recursively.

    Args:
        file_name: str: The name, or part of it, to look for.
        dir_path: str: The directory to search.
    """
    dir_path = as_path(dir_path)
    if not os.path.isdir(dir_path):
        print_error(f"Directory {dir_path} not found")
        return
    found = [path for path in _walk(dir_path) if file_name in os.path.basename(path)]
    if not found:
        print(f'[No matches found for "{file_name}" in {dir_path}]')
        return
    print(f'[Found {len(found)} matches for "{file_name}" in {dir_path}]')
    for path in found:
        print(path)
    print(f'[End of matches for "{file_name}" in {dir_path}]')


def _walk(top: str) -> Iterator[str]:
    """Every file below ``top``, sorted, hidden directories left out, unreadable ones skipped."""
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            yield os.path.join(root, name)


def _matching_lines(path: str, term: str, *, skip_binary: bool = True) -> list[tuple[int, str]]:
    """(line number, stripped line) of each line holding ``term``; none for an unreadable file."""
    try:
        if skip_binary and is_binary(path):
            return []
        with open(path, encoding="utf-8", errors="ignore") as f:
            return [(n, line.strip()) for n, line in enumerate(f, 1) if term in line]
    except OSError:
        return []
