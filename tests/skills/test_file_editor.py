"""file_editor: the executor's editor from a cell, sharing its undo history through the filesystem."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from corral_skills import file_editor
from executor.editor import Editor
from protocol import FileEdit, FileEdited

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HISTORY_ENV = "CORRAL_EDITOR_HISTORY_DIR"


def test_view_prints_the_numbered_file(tmp_path, capsys):
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    file_editor(command="view", path=str(tmp_path / "a.py"))
    assert capsys.readouterr().out == "     1\tx = 1\n     2\ty = 2\n"


def test_view_range_prints_some_lines(tmp_path, capsys):
    (tmp_path / "a.py").write_text("a\nb\nc\n")
    file_editor(command="view", path=str(tmp_path / "a.py"), view_range=[2, -1])
    assert capsys.readouterr().out == "     2\tb\n     3\tc\n"


def test_create_str_replace_insert_and_undo_print_the_editors_answers(tmp_path, capsys):
    path = str(tmp_path / "new.py")
    file_editor(command="create", path=path, file_text="a = 1\n")
    assert capsys.readouterr().out == f"Created {path} (1 line).\n"
    file_editor(command="str_replace", path=path, old_str="a = 1", new_str="a = 2")
    assert capsys.readouterr().out.startswith(
        f"Edited {path}: replaced the one occurrence of old_str, which started at line 1."
    )
    file_editor(command="insert", path=path, insert_line=1, new_str="b = 3")
    assert capsys.readouterr().out.startswith(f"Inserted 1 line after line 1 of {path}.")
    file_editor(command="undo_edit", path=path)
    assert capsys.readouterr().out == f"Undid the last edit to {path}. Its content is now:\n     1\ta = 2\n"


def test_editor_failures_print_an_error_line(tmp_path, capsys):
    (tmp_path / "a.py").write_text("x\n")
    file_editor(command="str_replace", path=str(tmp_path / "a.py"), old_str="nope", new_str="y")
    file_editor(command="view", path="relative.py")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"ERROR: old_str did not appear verbatim in {tmp_path / 'a.py'}.")
    assert out[1].startswith("ERROR: path must be absolute, but 'relative.py' is relative")


def test_an_unknown_command_is_an_error(tmp_path, capsys):
    file_editor(command="delete", path=str(tmp_path / "a.py"))
    assert capsys.readouterr().out == (
        "ERROR: Unknown command 'delete'; use one of view, create, str_replace, insert, undo_edit.\n"
    )


def test_an_argument_of_the_wrong_type_is_an_error(tmp_path, capsys):
    file_editor(command="insert", path=str(tmp_path / "a.py"), insert_line="2", new_str="x")
    assert capsys.readouterr().out == "ERROR: Invalid argument: Expected `int | null`, got `str` - at `$.insert_line`\n"


def test_without_a_history_dir_the_history_is_the_kernels_own(tmp_path, capsys):
    path = tmp_path / "a.txt"
    path.write_text("v0\n")
    file_editor(command="str_replace", path=str(path), old_str="v0", new_str="v1")
    file_editor(command="undo_edit", path=str(path))
    assert path.read_text() == "v0\n"


def test_a_cell_undoes_an_edit_a_file_edit_action_made(tmp_path, monkeypatch, capsys):
    history = str(tmp_path / "history")
    monkeypatch.setenv(HISTORY_ENV, history)
    path = tmp_path / "a.txt"
    path.write_text("before\n")
    executor_editor = Editor(session_id="s", history_dir=history)
    action = FileEdit(id="a1", command="str_replace", path=str(path), old_str="before", new_str="after")
    assert isinstance(asyncio.run(executor_editor.edit(action)), FileEdited)
    file_editor(command="undo_edit", path=str(path))
    assert capsys.readouterr().out.startswith(f"Undid the last edit to {path}.")
    assert path.read_text() == "before\n"


def test_an_action_undoes_an_edit_a_cell_made(tmp_path, monkeypatch, capsys):
    history = str(tmp_path / "history")
    monkeypatch.setenv(HISTORY_ENV, history)
    path = tmp_path / "a.txt"
    path.write_text("before\n")
    file_editor(command="str_replace", path=str(path), old_str="before", new_str="after")
    obs = asyncio.run(Editor(session_id="s", history_dir=history).edit(
        FileEdit(id="a2", command="undo_edit", path=str(path))
    ))
    assert isinstance(obs, FileEdited) and path.read_text() == "before\n"


def test_a_kernel_in_another_process_undoes_an_edit_made_here(tmp_path, monkeypatch):
    history = str(tmp_path / "history")
    monkeypatch.setenv(HISTORY_ENV, history)
    path = tmp_path / "a.txt"
    path.write_text("before\n")
    file_editor(command="str_replace", path=str(path), old_str="before", new_str="after")
    cell = f"from corral_skills import *\nfile_editor(command='undo_edit', path={str(path)!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", cell], check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT, HISTORY_ENV: history},
    )
    assert done.stdout.startswith(f"Undid the last edit to {path}."), done.stdout + done.stderr
    assert path.read_text() == "before\n"
