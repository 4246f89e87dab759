"""file_editor: the executor's own str_replace editor, called from a cell.

It is the editor ``file_edit`` actions run, with the same texts. Given the executor's history
directory (env ``CORRAL_EDITOR_HISTORY_DIR``, set in the kernel's environment) it shares their undo
history: a cell can undo an action's edit and an action a cell's.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from ._text import as_path, print_error

if TYPE_CHECKING:
    from executor.editor import Editor

HISTORY_DIR_ENV = "CORRAL_EDITOR_HISTORY_DIR"
_COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
_editors: dict[str | None, Editor] = {}
_editors_lock = threading.Lock()


def file_editor(
    command: str,
    path: str,
    file_text: str | None = None,
    old_str: str | None = None,
    new_str: str | None = None,
    insert_line: int | None = None,
    view_range: list[int] | None = None,
) -> None:
    """A str_replace editor for viewing, creating and editing files; prints its answer.

    Commands:
    `view`: a file with numbered lines (`view_range=[start, end]` for some of them, end -1 for the
    rest), or a directory's entries two levels deep.
    `create`: a new file holding `file_text`; it never overwrites an existing file.
    `str_replace`: replaces `old_str`, which must occur exactly once, with `new_str`.
    `insert`: inserts `new_str` as lines after line `insert_line` (0 for the start of the file).
    `undo_edit`: reverts the last edit of the file, shared with the session's file_edit actions.
    `path` must be absolute. A failure prints a line starting with `ERROR:`.

    Args:
        command: str: One of view, create, str_replace, insert, undo_edit.
        path: str: The absolute path of the file or directory.
        file_text: str | None: The content of the file to create.
        old_str: str | None: The exact text str_replace replaces.
        new_str: str | None: The replacement (str_replace) or the text to insert (insert).
        insert_line: int | None: The line after which insert inserts.
        view_range: list[int] | None: The lines view shows, [start, end].
    """
    import msgspec

    from protocol import Error, FileEdit

    if command not in _COMMANDS:
        print_error(f"Unknown command {command!r}; use one of {', '.join(_COMMANDS)}.")
        return
    fields = {
        "command": command, "path": as_path(path), "file_text": file_text, "old_str": old_str,
        "new_str": new_str, "insert_line": insert_line, "view_range": view_range,
    }
    try:
        action = msgspec.convert({k: v for k, v in fields.items() if v is not None}, FileEdit)
    except msgspec.ValidationError as exc:
        print_error(f"Invalid argument: {exc}")
        return
    obs = _editor().edit_sync(action)
    if isinstance(obs, Error):
        print_error(obs.message)
    else:
        print(obs.content.rstrip("\n"))


def _editor() -> Editor:
    """One editor per history directory, the directory read from the environment on every call."""
    from executor.editor import Editor

    history_dir = os.environ.get(HISTORY_DIR_ENV) or None
    with _editors_lock:
        editor = _editors.get(history_dir)
        if editor is None:
            editor = _editors[history_dir] = Editor(session_id=os.environ.get("CORRAL_SESSION_ID", ""),
                                                    history_dir=history_dir)
        return editor
