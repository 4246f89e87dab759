"""The editor's undo history kept in a directory: shared by editors, in one process or several."""

from __future__ import annotations

import os
import subprocess
import sys

from executor.editor import HISTORY_STEPS, Editor
from protocol import Error, FileEdit, FileEdited, codes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def edit(editor: Editor, command: str, path, **kw) -> FileEdited | Error:
    return editor.edit_sync(FileEdit(id="act-h", command=command, path=str(path), **kw))  # type: ignore[arg-type]


def test_two_editors_with_one_history_dir_undo_each_others_edits(tmp_path):
    first = Editor(session_id="s", history_dir=str(tmp_path / "history"))
    second = Editor(session_id="s", history_dir=str(tmp_path / "history"))
    path = tmp_path / "m.txt"
    path.write_text("v0\n")
    assert isinstance(edit(first, "str_replace", path, old_str="v0", new_str="v1"), FileEdited)
    assert isinstance(edit(second, "str_replace", path, old_str="v1", new_str="v2"), FileEdited)
    assert isinstance(edit(first, "undo_edit", path), FileEdited)
    assert path.read_text() == "v1\n"
    assert isinstance(edit(second, "undo_edit", path), FileEdited)
    assert path.read_text() == "v0\n"
    obs = edit(first, "undo_edit", path)
    assert isinstance(obs, Error) and obs.code == codes.EDIT_FAILED and "no edit history for" in obs.message


async def test_the_async_edit_and_edit_sync_share_the_history(tmp_path):
    editor = Editor(session_id="s", history_dir=str(tmp_path / "history"))
    path = tmp_path / "m.txt"
    await editor.edit(FileEdit(id="a", command="create", path=str(path), file_text="x\n"))
    obs = edit(Editor(session_id="s", history_dir=str(tmp_path / "history")), "undo_edit", path)
    assert isinstance(obs, FileEdited) and "the file was removed" in obs.content
    assert not path.exists()


def test_editors_without_a_history_dir_keep_their_own(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a")
    edit(Editor(session_id="s"), "str_replace", path, old_str="a", new_str="b")
    assert isinstance(edit(Editor(session_id="s"), "undo_edit", path), Error)


def test_a_history_in_a_directory_is_bounded(tmp_path):
    editor = Editor(session_id="s", history_dir=str(tmp_path / "history"))
    path = tmp_path / "m.txt"
    path.write_text("0")
    for i in range(1, HISTORY_STEPS + 3):
        edit(editor, "str_replace", path, old_str=str(i - 1), new_str=str(i))
    for _ in range(HISTORY_STEPS):
        assert isinstance(edit(editor, "undo_edit", path), FileEdited)
    assert path.read_text() == "2"
    assert isinstance(edit(editor, "undo_edit", path), Error)


def test_an_emptied_history_leaves_no_record(tmp_path):
    history = tmp_path / "history"
    editor = Editor(session_id="s", history_dir=str(history))
    path = tmp_path / "m.txt"
    path.write_text("a")
    edit(editor, "str_replace", path, old_str="a", new_str="b")
    assert len(list(history.glob("*.json"))) == 1
    edit(editor, "undo_edit", path)
    assert list(history.glob("*.json")) == []


def test_a_second_process_undoes_an_edit_made_by_the_first(tmp_path):
    history, path = tmp_path / "history", tmp_path / "m.txt"
    path.write_text("before\n")
    edit(Editor(session_id="s", history_dir=str(history)), "str_replace", path, old_str="before", new_str="after")
    script = (
        "import sys\n"
        "from executor.editor import Editor\n"
        "from protocol import FileEdit\n"
        "obs = Editor(session_id='s', history_dir=sys.argv[1]).edit_sync("
        "FileEdit(id='x', command='undo_edit', path=sys.argv[2]))\n"
        "print(type(obs).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(history), str(path)],
        check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.stdout.strip() == "FileEdited", done.stderr
    assert path.read_text() == "before\n"


def test_a_corrupt_record_reads_as_no_history(tmp_path):
    history = tmp_path / "history"
    editor = Editor(session_id="s", history_dir=str(history))
    path = tmp_path / "m.txt"
    path.write_text("a")
    edit(editor, "str_replace", path, old_str="a", new_str="b")
    (record,) = history.glob("*.json")
    record.write_text("{not json")
    obs = edit(editor, "undo_edit", path)
    assert isinstance(obs, Error) and "no edit history for" in obs.message


def test_editors_on_many_threads_editing_one_file_lose_no_step(tmp_path):
    import threading

    history, path = str(tmp_path / "history"), tmp_path / "m.txt"
    path.write_text("original\n")

    def insert_five(name):
        editor = Editor(session_id="s", history_dir=history)  # each its own editor: only the flock is shared
        for i in range(5):
            assert isinstance(edit(editor, "insert", path, insert_line=0, new_str=f"{name}{i}"), FileEdited)

    threads = [threading.Thread(target=insert_five, args=(name,)) for name in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(path.read_text().splitlines()) == 21  # no insert lost
    editor = Editor(session_id="s", history_dir=history)
    assert 4 * 5 <= HISTORY_STEPS
    for _ in range(4 * 5):  # each step is the text just before one insert
        assert isinstance(edit(editor, "undo_edit", path), FileEdited)
    assert path.read_text() == "original\n"
