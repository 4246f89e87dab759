"""FileRead/FileWrite/FileEdit actions and copy_to/copy_from/list_files through CorralRuntime, as
OpenHands' tests/runtime/ (test_ipython.py's file part, test_aci_edit.py, test_bash.py's copy tests)
check them."""

from __future__ import annotations

import zipfile

from openhands.events.action import CmdRunAction, FileEditAction, FileReadAction, FileWriteAction
from openhands.events.event import FileEditSource, FileReadSource
from openhands.events.observation import ErrorObservation, FileEditObservation, FileReadObservation, FileWriteObservation
import pytest


def sh(runtime, command: str):
    return runtime.run_action(CmdRunAction(command=command))


def test_read_missing_file_is_file_not_found(runtime):
    obs = runtime.run_action(FileReadAction(path="hello.sh"))
    assert isinstance(obs, ErrorObservation)
    assert "File not found" in obs.content


def test_write_then_read_relative_to_the_shell_cwd(runtime):
    obs = runtime.run_action(FileWriteAction(content='echo "Hello, World!"', path="hello.sh"))
    assert isinstance(obs, FileWriteObservation)
    assert obs.content == "" and obs.path == f"{runtime.workspace_root}/hello.sh"
    obs = runtime.run_action(FileReadAction(path="hello.sh"))
    assert isinstance(obs, FileReadObservation)
    assert obs.content == 'echo "Hello, World!"\n'
    assert sh(runtime, "bash hello.sh").content == "Hello, World!"


def test_read_line_range(runtime):
    runtime.run_action(FileWriteAction(content="a\nb\nc\nd", path="lines.txt"))
    assert runtime.run_action(FileReadAction(path="lines.txt", start=1, end=3)).content == "b\nc\n"


def test_write_line_range_replaces_those_lines(runtime):
    runtime.run_action(FileWriteAction(content="a\nb\nc", path="lines.txt"))
    runtime.run_action(FileWriteAction(content="B", path="lines.txt", start=1, end=2))
    assert sh(runtime, "cat lines.txt").content == "a\nB\nc"


def test_write_creates_parent_directories(runtime):
    runtime.run_action(FileWriteAction(content="x", path="deep/er/file.txt"))
    assert sh(runtime, "cat deep/er/file.txt").content == "x"


def test_editor_create_str_replace_insert_undo(runtime):
    path = f"{runtime.workspace_root}/edit.py"
    obs = runtime.run_action(FileEditAction(command="create", path=path, file_text="Line 1\nLine 2\nLine 3\n"))
    assert isinstance(obs, FileEditObservation)
    assert sh(runtime, f"cat {path}").content == "Line 1\nLine 2\nLine 3"
    obs = runtime.run_action(FileEditAction(command="str_replace", path=path, old_str="Line 2", new_str="New Line 2"))
    assert "New Line 2" in obs.content
    assert "+New Line 2" in obs.diff
    obs = runtime.run_action(FileEditAction(command="insert", path=path, insert_line=3, new_str="Line 4"))
    assert sh(runtime, f"cat {path}").content == "Line 1\nNew Line 2\nLine 3\nLine 4"
    obs = runtime.run_action(FileEditAction(command="undo_edit", path=path))
    assert isinstance(obs, FileEditObservation) and not obs.content.startswith("ERROR")
    assert sh(runtime, f"cat {path}").content == "Line 1\nNew Line 2\nLine 3"


def test_editor_error_is_an_edit_observation(runtime):
    path = f"{runtime.workspace_root}/e.txt"
    runtime.run_action(FileEditAction(command="create", path=path, file_text="one\n"))
    obs = runtime.run_action(FileEditAction(command="str_replace", path=path, old_str="absent", new_str="x"))
    assert isinstance(obs, FileEditObservation)
    assert obs.content.startswith("ERROR:\n")


def test_editor_view_through_an_aci_read(runtime):
    path = f"{runtime.workspace_root}/v.txt"
    runtime.run_action(FileEditAction(command="create", path=path, file_text="alpha\nbeta\n"))
    obs = runtime.run_action(FileReadAction(path=path, impl_source=FileReadSource.OH_ACI))
    assert isinstance(obs, FileReadObservation)
    assert "1\talpha" in obs.content and "2\tbeta" in obs.content


def test_llm_based_edit_without_llm_is_reported(runtime):
    obs = runtime.run_action(FileEditAction(path="x.txt", content="x", impl_source=FileEditSource.LLM_BASED_EDIT))
    assert obs is not None  # OpenHands' own mixin answers (it needs an LLM for a real edit)


def test_copy_single_file_and_overwrite(runtime, tmp_path):
    (tmp_path / "test_file.txt").write_text("Hello, World!")
    sh(runtime, "touch test_file.txt")
    runtime.copy_to(str(tmp_path / "test_file.txt"), str(runtime.workspace_root))
    assert sh(runtime, "cat test_file.txt").content == "Hello, World!"


def test_copy_to_a_new_directory(runtime, tmp_path):
    (tmp_path / "test_file.txt").write_text("Hello, World!")
    runtime.copy_to(str(tmp_path / "test_file.txt"), f"{runtime.workspace_root}/new_dir")
    assert sh(runtime, "cat new_dir/test_file.txt").content == "Hello, World!"


def test_copy_directory_recursively_and_list(runtime, tmp_path):
    src = tmp_path / "test_dir"
    (src / "sub").mkdir(parents=True)
    (src / "file1.txt").write_text("File 1 content")
    (src / "sub" / "file2.txt").write_text("File 2 content")
    runtime.copy_to(str(src), str(runtime.workspace_root), recursive=True)
    assert "test_dir/" in runtime.list_files()
    assert runtime.list_files("test_dir") == ["sub/", "file1.txt"]
    assert sh(runtime, "cat test_dir/sub/file2.txt").content == "File 2 content"


def test_copy_missing_file_raises(runtime):
    with pytest.raises(FileNotFoundError):
        runtime.copy_to("/nonexistent/file.txt", str(runtime.workspace_root))


def test_copy_binary_file_larger_than_one_part(runtime, tmp_path):
    data = bytes(range(256)) * 4000  # 1 MB: three parts
    (tmp_path / "blob.bin").write_bytes(data)
    runtime.copy_to(str(tmp_path / "blob.bin"), str(runtime.workspace_root))
    assert sh(runtime, "sha256sum blob.bin | cut -c1-16").content == __import__("hashlib").sha256(data).hexdigest()[:16]


def test_copy_from_a_directory_is_a_zip(runtime, tmp_path):
    sh(runtime, "mkdir -p out/in && echo one > out/a.txt && echo two > out/in/b.txt")
    result = runtime.copy_from(f"{runtime.workspace_root}/out")
    with zipfile.ZipFile(result) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "in/b.txt"]
        assert zf.read("in/b.txt") == b"two\n"
    result.unlink()
