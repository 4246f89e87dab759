"""The str_replace editor: views, edits, undo history, and the error texts a model acts on."""

from __future__ import annotations

import os
import stat

import pytest

from executor._editor import HISTORY_STEPS, MAX_VIEW_CHARS, Editor
from protocol import Error, FileEdit, FileEdited, codes

from . import peak_rss

SID = "sess-ed"


@pytest.fixture
def editor() -> Editor:
    return Editor(session_id=SID)


async def run(editor: Editor, command: str, path, **kw) -> FileEdited | Error:
    return await editor.edit(FileEdit(id="act-e", command=command, path=str(path), **kw))  # type: ignore[arg-type]


async def ok(editor: Editor, command: str, path, **kw) -> FileEdited:
    obs = await run(editor, command, path, **kw)
    assert isinstance(obs, FileEdited), obs
    return obs


async def fails(editor: Editor, command: str, path, code: str, phrase: str, **kw) -> str:
    obs = await run(editor, command, path, **kw)
    assert isinstance(obs, Error), obs
    assert obs.code == code, obs
    assert phrase in obs.message, obs.message
    return obs.message


# --------------------------------------------------------------------------------- paths


async def test_relative_path_is_refused_with_the_absolute_form_suggested(editor):
    message = await fails(editor, "view", "src/app.py", codes.INVALID_ARGUMENT, "path must be absolute")
    assert repr(os.path.join(os.getcwd(), "src/app.py")) in message


async def test_home_relative_path_is_expanded(editor, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "notes.txt").write_text("hi\n")
    obs = await ok(editor, "view", "~/notes.txt")
    assert (obs.path, obs.content) == (str(tmp_path / "notes.txt"), "     1\thi\n")


async def test_observations_answer_the_action(editor, tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    obs = await ok(editor, "view", tmp_path / "a.txt")
    assert (obs.cause, obs.session_id, obs.path) == ("act-e", SID, str(tmp_path / "a.txt"))
    assert obs.id and obs.id != "act-e"


# ---------------------------------------------------------------------------------- view


async def test_view_numbers_lines_like_cat_n(editor, tmp_path):
    (tmp_path / "a.py").write_text("first\n\tsecond\n")
    obs = await ok(editor, "view", tmp_path / "a.py")
    assert obs.content == "     1\tfirst\n     2\t\tsecond\n"
    assert obs.diff == ""


async def test_view_range_shows_only_those_lines(editor, tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"l{i}\n" for i in range(1, 11)))
    obs = await ok(editor, "view", tmp_path / "a.txt", view_range=[3, 4])
    assert obs.content == "     3\tl3\n     4\tl4\n"


async def test_view_range_end_minus_one_reads_to_the_end(editor, tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3")
    obs = await ok(editor, "view", tmp_path / "a.txt", view_range=[2, -1])
    assert obs.content == "     2\tl2\n     3\tl3\n"


async def test_view_range_needs_two_integers(editor, tmp_path):
    (tmp_path / "a.txt").write_text("l1\n")
    await fails(editor, "view", tmp_path / "a.txt", codes.INVALID_ARGUMENT, "two integers [start, end]", view_range=[1])


async def test_view_range_start_out_of_bounds_states_the_valid_range(editor, tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\n")
    message = await fails(
        editor, "view", tmp_path / "a.txt", codes.INVALID_ARGUMENT, "view_range start 3 is out of range", view_range=[3, 3]
    )
    assert "[1, 2]" in message


async def test_view_range_end_before_start_is_invalid(editor, tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3\n")
    await fails(
        editor, "view", tmp_path / "a.txt", codes.INVALID_ARGUMENT, "view_range end 1 is before its start 2", view_range=[2, 1]
    )


async def test_view_range_end_past_the_last_line_is_invalid(editor, tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\n")
    await fails(
        editor, "view", tmp_path / "a.txt", codes.INVALID_ARGUMENT, "past the last line", view_range=[1, 9]
    )


async def test_view_of_an_empty_file_says_so(editor, tmp_path):
    (tmp_path / "e.txt").write_text("")
    obs = await ok(editor, "view", tmp_path / "e.txt")
    assert obs.content == f"{tmp_path / 'e.txt'} is empty."


async def test_view_of_a_long_file_is_truncated_with_a_view_range_hint(editor, tmp_path):
    (tmp_path / "long.txt").write_text("".join(f"line number {i}\n" for i in range(1, 5001)))
    obs = await ok(editor, "view", tmp_path / "long.txt")
    assert len(obs.content) < MAX_VIEW_CHARS + 300
    assert "[output truncated after line" in obs.content
    assert "use view_range" in obs.content
    assert obs.content.startswith("     1\tline number 1\n")


async def test_view_of_a_single_huge_line_is_cut(editor, tmp_path):
    (tmp_path / "min.js").write_text("x" * (MAX_VIEW_CHARS * 2) + "\nnext\n")
    obs = await ok(editor, "view", tmp_path / "min.js")
    assert "line 1 is longer than" in obs.content
    assert "view_range [2, 2]" in obs.content


async def test_view_of_a_directory_lists_two_levels_without_hidden_entries(editor, tmp_path):
    (tmp_path / "src" / "pkg" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "main.py").write_text("")
    (tmp_path / "src" / "pkg" / "deep" / "too_deep.py").write_text("")
    (tmp_path / "README.md").write_text("")
    (tmp_path / ".git").mkdir()
    (tmp_path / "src" / ".cache").write_text("")
    obs = await ok(editor, "view", tmp_path)
    rows = obs.content.splitlines()
    assert f"{tmp_path}/README.md" in rows
    assert f"{tmp_path}/src/" in rows
    assert f"{tmp_path}/src/main.py" in rows
    assert f"{tmp_path}/src/pkg/" in rows
    assert "too_deep" not in obs.content
    assert ".git" not in obs.content and ".cache" not in obs.content
    assert "(2 hidden entries not shown)" in rows


async def test_view_range_on_a_directory_is_invalid(editor, tmp_path):
    await fails(editor, "view", tmp_path, codes.INVALID_ARGUMENT, "view_range applies to files only", view_range=[1, 2])


async def test_view_of_a_missing_path_is_file_not_found(editor, tmp_path):
    await fails(editor, "view", tmp_path / "nope.py", codes.FILE_NOT_FOUND, "does not exist")


async def test_view_of_a_binary_file_is_refused(editor, tmp_path):
    (tmp_path / "img.png").write_bytes(b"\x89PNG\x00\x00")
    await fails(editor, "view", tmp_path / "img.png", codes.BINARY_FILE, "encoding='base64'")


async def test_view_of_non_utf8_text_is_refused_as_binary(editor, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("naïve\n".encode("latin-1"))
    await fails(editor, "view", tmp_path / "latin1.txt", codes.BINARY_FILE, "invalid UTF-8")


# -------------------------------------------------------------------------------- create


async def test_create_writes_the_exact_text_and_makes_parents(editor, tmp_path):
    path = tmp_path / "new" / "pkg" / "mod.py"
    obs = await ok(editor, "create", path, file_text="a = 1\nb = 2")
    assert path.read_bytes() == b"a = 1\nb = 2"
    assert obs.content == f"Created {path} (2 lines)."
    assert obs.diff.startswith(f"--- /dev/null\n+++ {path}\n@@ -0,0 +1,2 @@\n+a = 1\n+b = 2\n")
    assert obs.diff.endswith("\\ No newline at end of file\n")


async def test_create_needs_file_text(editor, tmp_path):
    await fails(editor, "create", tmp_path / "x.py", codes.INVALID_ARGUMENT, "create command needs file_text")


async def test_create_refuses_an_existing_file(editor, tmp_path):
    (tmp_path / "x.py").write_text("keep me")
    message = await fails(editor, "create", tmp_path / "x.py", codes.EDIT_FAILED, "already exists", file_text="new")
    assert "str_replace" in message and "file_write" in message
    assert (tmp_path / "x.py").read_text() == "keep me"


async def test_create_on_a_directory_is_refused(editor, tmp_path):
    (tmp_path / "d").mkdir()
    await fails(editor, "create", tmp_path / "d", codes.IS_A_DIRECTORY, "is a directory", file_text="x")


# --------------------------------------------------------------------------- str_replace


async def test_str_replace_replaces_the_unique_occurrence(editor, tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    obs = await ok(editor, "str_replace", path, old_str="    return 1\n", new_str="    x = 1\n    return x\n")
    assert path.read_text() == "def f():\n    x = 1\n    return x\n\n\ndef g():\n    return 2\n"
    assert f"Edited {path}" in obs.content
    assert "started at line 2" in obs.content
    assert "     2\t    x = 1\n     3\t    return x\n" in obs.content
    assert obs.content.endswith("edit again or run undo_edit.")
    assert "-    return 1\n+    x = 1\n+    return x\n" in obs.diff


async def test_str_replace_snippet_shows_a_few_lines_around_the_edit(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("".join(f"l{i}\n" for i in range(1, 21)))
    obs = await ok(editor, "str_replace", path, old_str="l10\n", new_str="ten\n")
    assert "Lines 6-15 now read:" in obs.content
    assert "     6\tl6\n" in obs.content and "    15\tl15\n" in obs.content
    assert "     5\tl5" not in obs.content and "    16\tl16" not in obs.content


async def test_str_replace_without_new_str_deletes(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("keep\ndrop\nkeep too\n")
    await ok(editor, "str_replace", path, old_str="drop\n")
    assert path.read_text() == "keep\nkeep too\n"


async def test_str_replace_needs_old_str(editor, tmp_path):
    (tmp_path / "m.txt").write_text("x")
    await fails(editor, "str_replace", tmp_path / "m.txt", codes.INVALID_ARGUMENT, "needs old_str", new_str="y")


async def test_str_replace_refuses_an_empty_old_str(editor, tmp_path):
    (tmp_path / "m.txt").write_text("x")
    await fails(editor, "str_replace", tmp_path / "m.txt", codes.INVALID_ARGUMENT, "old_str is empty", old_str="", new_str="y")


async def test_str_replace_refuses_identical_old_and_new(editor, tmp_path):
    (tmp_path / "m.txt").write_text("x")
    await fails(editor, "str_replace", tmp_path / "m.txt", codes.INVALID_ARGUMENT, "identical", old_str="x", new_str="x")


async def test_str_replace_with_no_match_says_it_did_not_appear_verbatim(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("alpha\nbeta\n")
    message = await fails(editor, "str_replace", path, codes.EDIT_FAILED, f"did not appear verbatim in {path}", old_str="gamma")
    assert "whitespace, indentation" in message


async def test_str_replace_no_match_points_at_lines_with_other_indentation(editor, tmp_path):
    path = tmp_path / "m.py"
    path.write_text("class A:\n\tdef f(self):\n\t\treturn 1\n")
    message = await fails(
        editor, "str_replace", path, codes.EDIT_FAILED, "did not appear verbatim",
        old_str="    def f(self):\n        return 1", new_str="pass",
    )
    assert "different indentation start at line 2" in message


async def test_str_replace_no_match_points_at_whitespace_at_the_ends(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("x = 1\n")
    message = await fails(editor, "str_replace", path, codes.EDIT_FAILED, "did not appear verbatim", old_str="x = 1  ", new_str="y")
    assert "leading and trailing whitespace" in message


async def test_str_replace_no_match_mentions_crlf_line_endings(editor, tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"one\r\ntwo\r\n")
    message = await fails(editor, "str_replace", path, codes.EDIT_FAILED, "did not appear verbatim", old_str="one\ntwo", new_str="x")
    assert "CRLF" in message


async def test_str_replace_with_several_matches_lists_their_lines(editor, tmp_path):
    path = tmp_path / "m.py"
    path.write_text("x = 1\ny = 2\nx = 1\n\nx = 1\n")
    message = await fails(editor, "str_replace", path, codes.EDIT_FAILED, "occurs 3 times", old_str="x = 1", new_str="x = 9")
    assert "starting at lines 1, 3, 5" in message
    assert path.read_text() == "x = 1\ny = 2\nx = 1\n\nx = 1\n"


async def test_str_replace_counts_overlapping_occurrences(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("aaa")
    await fails(editor, "str_replace", path, codes.EDIT_FAILED, "occurs 2 times", old_str="aa", new_str="b")


async def test_str_replace_on_a_missing_file_suggests_create(editor, tmp_path):
    await fails(editor, "str_replace", tmp_path / "ghost.py", codes.FILE_NOT_FOUND, "use the create command", old_str="a", new_str="b")


async def test_str_replace_on_a_binary_file_is_refused(editor, tmp_path):
    (tmp_path / "b.bin").write_bytes(b"a\x00b")
    await fails(editor, "str_replace", tmp_path / "b.bin", codes.BINARY_FILE, "not UTF-8 text", old_str="a", new_str="c")


async def test_str_replace_on_a_directory_is_refused(editor, tmp_path):
    await fails(editor, "str_replace", tmp_path, codes.IS_A_DIRECTORY, "is a directory", old_str="a", new_str="b")


async def test_str_replace_keeps_a_missing_final_newline(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_bytes(b"a\nb")
    await ok(editor, "str_replace", path, old_str="a", new_str="A")
    assert path.read_bytes() == b"A\nb"


async def test_str_replace_expands_no_tabs(editor, tmp_path):
    path = tmp_path / "Makefile"
    path.write_bytes(b"all:\n\techo hi\n")
    await ok(editor, "str_replace", path, old_str="\techo hi", new_str="\techo bye\t# done")
    assert path.read_bytes() == b"all:\n\techo bye\t# done\n"


async def test_str_replace_keeps_crlf_line_endings(editor, tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"one\r\ntwo\r\n")
    await ok(editor, "str_replace", path, old_str="two", new_str="2")
    assert path.read_bytes() == b"one\r\n2\r\n"


async def test_edit_keeps_the_file_mode(editor, tmp_path):
    path = tmp_path / "run.sh"
    path.write_text("echo a\n")
    path.chmod(0o755)
    await ok(editor, "str_replace", path, old_str="a", new_str="b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


async def test_edits_leave_no_temp_files(editor, tmp_path):
    path = tmp_path / "m.txt"
    await ok(editor, "create", path, file_text="a\n")
    await ok(editor, "str_replace", path, old_str="a", new_str="b")
    await ok(editor, "insert", path, insert_line=1, new_str="c")
    await ok(editor, "undo_edit", path)
    assert os.listdir(tmp_path) == ["m.txt"]


async def test_diff_is_capped_to_fit_max_bytes(tmp_path):
    small = Editor(session_id=SID, max_bytes=2_000)
    obs = await small.edit(
        FileEdit(id="a", command="create", path=str(tmp_path / "big.txt"), file_text="".join(f"line {i}\n" for i in range(2000)))
    )
    assert isinstance(obs, FileEdited)
    assert len(obs.content.encode()) + len(obs.diff.encode()) <= 2_000
    assert "[diff truncated" in obs.diff


# -------------------------------------------------------------------------------- insert


async def test_insert_at_zero_goes_before_the_first_line(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\nb\n")
    obs = await ok(editor, "insert", path, insert_line=0, new_str="top")
    assert path.read_text() == "top\na\nb\n"
    assert f"Inserted 1 line at the start of {path}" in obs.content
    assert "     1\ttop\n" in obs.content
    assert "+top\n" in obs.diff


async def test_insert_after_line_n(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\nb\nc\n")
    obs = await ok(editor, "insert", path, insert_line=2, new_str="x\ny\n")
    assert path.read_text() == "a\nb\nx\ny\nc\n"
    assert f"Inserted 2 lines after line 2 of {path}" in obs.content
    assert "     3\tx\n     4\ty\n" in obs.content


async def test_insert_after_the_last_line_keeps_the_final_newline(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\nb\n")
    await ok(editor, "insert", path, insert_line=2, new_str="c")
    assert path.read_text() == "a\nb\nc\n"


async def test_insert_after_a_last_line_without_newline_keeps_it_missing(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_bytes(b"a\nb")
    await ok(editor, "insert", path, insert_line=2, new_str="c")
    assert path.read_bytes() == b"a\nb\nc"


async def test_insert_into_an_empty_file_writes_new_str_verbatim(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("")
    await ok(editor, "insert", path, insert_line=0, new_str="only\n")
    assert path.read_text() == "only\n"


async def test_insert_into_a_crlf_file_ends_the_new_line_with_crlf(editor, tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"a\r\nb\r\n")
    await ok(editor, "insert", path, insert_line=1, new_str="x")
    assert path.read_bytes() == b"a\r\nx\r\nb\r\n"


async def test_insert_line_out_of_range_states_the_valid_range(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\nb\nc\n")
    message = await fails(editor, "insert", path, codes.INVALID_ARGUMENT, "insert_line 4 is out of range", insert_line=4, new_str="x")
    assert "[0, 3]" in message


async def test_insert_line_below_zero_is_out_of_range(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a\n")
    await fails(editor, "insert", path, codes.INVALID_ARGUMENT, "must be in [0, 1]", insert_line=-1, new_str="x")


async def test_insert_needs_insert_line(editor, tmp_path):
    (tmp_path / "m.txt").write_text("a\n")
    await fails(editor, "insert", tmp_path / "m.txt", codes.INVALID_ARGUMENT, "needs insert_line", new_str="x")


async def test_insert_needs_new_str(editor, tmp_path):
    (tmp_path / "m.txt").write_text("a\n")
    await fails(editor, "insert", tmp_path / "m.txt", codes.INVALID_ARGUMENT, "needs new_str", insert_line=0)


async def test_insert_into_a_binary_file_is_refused(editor, tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    await fails(editor, "insert", tmp_path / "b.bin", codes.BINARY_FILE, "not UTF-8 text", insert_line=0, new_str="x")


# ------------------------------------------------------------------------------ undo_edit


async def test_undo_restores_the_previous_content(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("before\n")
    await ok(editor, "str_replace", path, old_str="before", new_str="after")
    obs = await ok(editor, "undo_edit", path)
    assert path.read_text() == "before\n"
    assert f"Undid the last edit to {path}" in obs.content
    assert "     1\tbefore\n" in obs.content
    assert "-after\n+before\n" in obs.diff


async def test_undo_steps_back_through_several_edits(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("v0")
    for i in range(1, 4):
        await ok(editor, "str_replace", path, old_str=f"v{i - 1}", new_str=f"v{i}")
    seen = []
    for _ in range(3):
        await ok(editor, "undo_edit", path)
        seen.append(path.read_text())
    assert seen == ["v2", "v1", "v0"]
    await fails(editor, "undo_edit", path, codes.EDIT_FAILED, f"no edit history for {path}")


async def test_undo_of_create_removes_the_file(editor, tmp_path):
    path = tmp_path / "fresh.py"
    await ok(editor, "create", path, file_text="x = 1\n")
    obs = await ok(editor, "undo_edit", path)
    assert not path.exists()
    assert "the file was removed" in obs.content
    assert obs.diff.startswith(f"--- {path}\n+++ /dev/null\n")


async def test_undo_without_history_is_refused(editor, tmp_path):
    (tmp_path / "m.txt").write_text("x")
    await fails(editor, "undo_edit", tmp_path / "m.txt", codes.EDIT_FAILED, f"no edit history for {tmp_path / 'm.txt'}")


async def test_failed_edits_add_no_undo_step(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("x")
    await fails(editor, "str_replace", path, codes.EDIT_FAILED, "did not appear verbatim", old_str="y", new_str="z")
    await fails(editor, "undo_edit", path, codes.EDIT_FAILED, "no edit history for")


async def test_undo_history_is_per_file(editor, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a0")
    b.write_text("b0")
    await ok(editor, "str_replace", a, old_str="a0", new_str="a1")
    await ok(editor, "str_replace", b, old_str="b0", new_str="b1")
    await ok(editor, "undo_edit", a)
    assert (a.read_text(), b.read_text()) == ("a0", "b1")


async def test_undo_history_is_bounded(editor, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("0")
    for i in range(1, HISTORY_STEPS + 3):
        await ok(editor, "str_replace", path, old_str=str(i - 1), new_str=str(i))
    for _ in range(HISTORY_STEPS):
        await ok(editor, "undo_edit", path)
    assert path.read_text() == "2"
    await fails(editor, "undo_edit", path, codes.EDIT_FAILED, "no edit history for")


# ------------------------------------------------------------------ long lines, huge numbers, bad paths


async def test_a_view_of_a_huge_one_line_file_holds_only_a_view(editor, tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:  # a text head, then a sparse run with no newline: one 60 MB line
        f.write(b"a" * 8192)
        f.truncate(60 * 1024 * 1024)
    before = peak_rss.reset()
    obs = await ok(editor, "view", path, view_range=[1, 1])
    grown = peak_rss.grown_mb(before)
    assert obs.content.startswith("     1\taaaa") and "line 1 is longer than" in obs.content
    assert len(obs.content) < MAX_VIEW_CHARS + 300
    assert grown < 30, f"peak RSS grew by {grown:.0f} MB"


async def test_a_view_of_many_short_lines_holds_only_a_view(editor, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"\n" * (20 * 1024 * 1024))  # 20 M empty lines: a list of them would take 160 MB
    before = peak_rss.reset()
    obs = await ok(editor, "view", path, view_range=[10_000_000, -1])
    grown = peak_rss.grown_mb(before)
    assert obs.content.startswith("10000000\t\n") and f"of {20 * 1024 * 1024}" in obs.content
    assert grown < 30, f"peak RSS grew by {grown:.0f} MB"


@pytest.mark.parametrize(("view_range", "phrase"), [
    ([1, 10**20], "past the last line"),
    ([10**20, -1], "view_range start"),
    ([-(10**20), 2], "view_range start"),
    ([10**20, 10**20 + 1], "view_range start"),
])
async def test_view_range_with_huge_numbers_is_invalid_argument(editor, tmp_path, view_range, phrase):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    await fails(editor, "view", tmp_path / "a.txt", codes.INVALID_ARGUMENT, phrase, view_range=view_range)


async def test_insert_line_with_a_huge_number_is_invalid_argument(editor, tmp_path):
    (tmp_path / "a.txt").write_text("one\n")
    await fails(editor, "insert", tmp_path / "a.txt", codes.INVALID_ARGUMENT, "out of range", insert_line=10**20, new_str="x")


@pytest.mark.parametrize("command", ["view", "create", "str_replace", "insert", "undo_edit"])
async def test_a_nul_in_the_path_is_invalid_argument(editor, tmp_path, command):
    kw = {"create": {"file_text": "x"}, "str_replace": {"old_str": "a", "new_str": "b"},
          "insert": {"insert_line": 0, "new_str": "x"}}.get(command, {})
    code = codes.EDIT_FAILED if command == "undo_edit" else codes.INVALID_ARGUMENT
    await fails(editor, command, f"{tmp_path}/a\x00b", code, "NUL byte" if code == codes.INVALID_ARGUMENT else "", **kw)


async def test_a_snippet_after_an_edit_in_a_file_of_long_lines_is_bounded(editor, tmp_path):
    long_line = "z" * 200_000
    (tmp_path / "a.txt").write_text(f"needle\n{long_line}\n{long_line}\n")
    obs = await ok(editor, "str_replace", tmp_path / "a.txt", old_str="needle", new_str="pin")
    assert "     1\tpin\n" in obs.content and len(obs.content) < 2 * MAX_VIEW_CHARS
