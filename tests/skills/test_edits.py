"""edit_file_by_replace, insert_content_at_line, append_file: the file written and the window shown."""

from __future__ import annotations

import os

from corral_skills import append_file, create_file, edit_file_by_replace, insert_content_at_line, open_file, scroll_down

from .helpers import MSG_FILE_UPDATED, numbered, window


def edited(path, rows: list[str], line: int) -> str:
    """What an edit prints when the whole (short) file fits its window."""
    total = len(rows)
    body = "".join(f"{i}|{row}\n" for i, row in enumerate(rows, 1))
    return (
        f"[File: {path} ({total} lines total after edit)]\n(this is the beginning of the file)\n{body}"
        f"(this is the end of the file)\n{MSG_FILE_UPDATED.format(line_number=line)}\n"
    )


# ------------------------------------------------------------------------- edit_file_by_replace


def test_replace_whole_lines(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 5)
    edit_file_by_replace(path, to_replace="Line 1\nLine 2\nLine 3", new_content="REPLACE TEXT")
    assert capsys.readouterr().out == edited(path, ["REPLACE TEXT", "Line 4", "Line 5"], 1)
    assert (tmp_path / "a.txt").read_text() == "REPLACE TEXT\nLine 4\nLine 5\n"


def test_replace_a_unique_pair_of_repeated_lines(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Line 1\nLine 2\nLine 2\nLine 4\nLine 5")
    path = str(tmp_path / "a.txt")
    edit_file_by_replace(file_name=path, to_replace="Line 2\nLine 2", new_content="Line 2\nREPLACE TEXT")
    assert capsys.readouterr().out == edited(path, ["Line 1", "Line 2", "REPLACE TEXT", "Line 4", "Line 5"], 2)


def test_replace_part_of_a_line_keeps_the_rest_of_it(tmp_path, capsys):
    (tmp_path / "a.py").write_text("    x = foo()\ny = 2\n")
    path = str(tmp_path / "a.py")
    edit_file_by_replace(path, "foo()", "bar(1)")
    assert (tmp_path / "a.py").read_text() == "    x = bar(1)\ny = 2\n"
    assert capsys.readouterr().out == edited(path, ["    x = bar(1)", "y = 2"], 1)


def test_replace_a_line_with_its_newline_by_text_without_one_keeps_the_line_break(tmp_path):
    (tmp_path / "a.txt").write_text("a\nb\nc\n")
    edit_file_by_replace(str(tmp_path / "a.txt"), "b\n", "X")
    assert (tmp_path / "a.txt").read_text() == "a\nX\nc\n"


def test_replace_with_nothing_removes_the_lines(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("line 1\nline 2\nline 2\nline 3\n")
    path = str(tmp_path / "a.txt")
    edit_file_by_replace(path, to_replace="line 2\nline 3", new_content="")
    assert (tmp_path / "a.txt").read_text() == "line 1\nline 2\n"
    assert capsys.readouterr().out == edited(path, ["line 1", "line 2"], 2)  # line 3 is gone: the last one


def test_replace_falls_back_to_a_match_ignoring_spaces_and_replaces_its_lines(tmp_path, capsys):
    (tmp_path / "a.py").write_text("def f():\n    return  a+b\n")
    path = str(tmp_path / "a.py")
    edit_file_by_replace(path, "return a + b", "    return a - b")
    assert (tmp_path / "a.py").read_text() == "def f():\n    return a - b\n"
    assert capsys.readouterr().out == edited(path, ["def f():", "    return a - b"], 2)


def test_replace_of_text_that_is_not_there_says_so(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 3)
    edit_file_by_replace(path, "Line 9", "x")
    assert capsys.readouterr().out == f"[No exact match found in {path} for\n```\nLine 9\n```\n]\n"
    assert (tmp_path / "a.txt").read_text() == "Line 1\nLine 2\nLine 3"


def test_replace_of_repeated_text_is_an_error(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Line 1\nLine 2\nLine 2\n")
    edit_file_by_replace(str(tmp_path / "a.txt"), "Line 2", "X")
    assert capsys.readouterr().out == (
        "ERROR: `to_replace` appears more than once, please include enough lines to make code in "
        "`to_replace` unique.\n"
    )


def test_replace_of_repeated_text_ignoring_spaces_is_an_error(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a  =1\na= 1\n")
    edit_file_by_replace(str(tmp_path / "a.txt"), "a = 1", "b = 1")
    assert capsys.readouterr().out.startswith("ERROR: `to_replace` appears more than once")


def test_replace_with_the_same_text_is_an_error(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 2)
    edit_file_by_replace(path, "Line 1", "Line 1")
    assert capsys.readouterr().out == "ERROR: `to_replace` and `new_content` must be different.\n"


def test_replace_of_empty_text_is_an_error(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 2)
    edit_file_by_replace(path, "", "Line 1")
    edit_file_by_replace(path, "  \n", "Line 1")
    assert capsys.readouterr().out == "ERROR: `to_replace` must not be empty.\n" * 2


def test_replace_in_a_missing_file_is_an_error(capsys):
    edit_file_by_replace("unknown file", "ORIGINAL TEXT", "REPLACE TEXT")
    assert capsys.readouterr().out == "ERROR: File unknown file not found.\n"


def test_replace_keeps_backticks_as_they_are(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("`A`\n`B`\n")
    path = str(tmp_path / "a.txt")
    edit_file_by_replace(path, "`A`\n`B`", "`C`\n`D`")
    out = capsys.readouterr().out
    assert out == edited(path, ["`C`", "`D`"], 1) and "\\`" not in out


def test_replace_in_a_long_file_shows_the_window_around_the_edit(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    edit_file_by_replace(path, "Line 500\n", "CHANGED\n")
    expected_rows = window(450, 550, 1000, text=lambda i: "CHANGED" if i == 500 else f"Line {i}")
    assert capsys.readouterr().out == (
        f"[File: {path} (1000 lines total after edit)]\n{expected_rows}{MSG_FILE_UPDATED.format(line_number=500)}\n"
    )


def test_an_edit_makes_the_file_current_at_the_edited_line(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    edit_file_by_replace(path, "Line 500\n", "CHANGED\n")
    capsys.readouterr()
    scroll_down()
    assert capsys.readouterr().out.splitlines()[1] == "(599 more lines above)"


def test_an_edit_keeps_the_file_mode(tmp_path):
    path = numbered(tmp_path / "run.sh", 2)
    os.chmod(path, 0o751)
    edit_file_by_replace(path, "Line 1", "echo hi")
    assert os.stat(path).st_mode & 0o777 == 0o751


# ------------------------------------------------------------------------ insert_content_at_line


def test_insert_puts_the_content_at_the_line_and_moves_the_rest_down(tmp_path, capsys):
    path = numbered(tmp_path / "b.txt", 3)
    insert_content_at_line(file_name=path, line_number=2, content="Inserted Line")
    assert capsys.readouterr().out == edited(path, ["Line 1", "Inserted Line", "Line 2", "Line 3"], 2)


def test_insert_one_past_the_last_line_appends(tmp_path):
    path = numbered(tmp_path / "b.txt", 2)
    insert_content_at_line(path, 3, "Line 3")
    assert (tmp_path / "b.txt").read_text() == "Line 1\nLine 2\nLine 3\n"


def test_insert_into_a_created_file_replaces_its_empty_line(tmp_path, capsys):
    path = str(tmp_path / "a.txt")
    create_file(path)
    capsys.readouterr()
    insert_content_at_line(path, 1, "REPLACE TEXT1\nREPLACE TEXT2\nREPLACE TEXT3")
    assert capsys.readouterr().out == edited(path, ["REPLACE TEXT1", "REPLACE TEXT2", "REPLACE TEXT3"], 1)
    assert (tmp_path / "a.txt").read_text() == "REPLACE TEXT1\nREPLACE TEXT2\nREPLACE TEXT3\n"


def test_insert_into_an_empty_file(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("")
    insert_content_at_line(str(tmp_path / "a.txt"), 1, "REPLACE TEXT")
    assert capsys.readouterr().out == edited(str(tmp_path / "a.txt"), ["REPLACE TEXT"], 1)


def test_insert_before_a_trailing_empty_line(tmp_path, capsys):
    (tmp_path / "b.txt").write_text("Line 1\n\n")
    insert_content_at_line(str(tmp_path / "b.txt"), 2, "Inserted Line")
    assert capsys.readouterr().out == edited(str(tmp_path / "b.txt"), ["Line 1", "Inserted Line", ""], 2)


def test_insert_at_a_bad_line_number_is_an_error(tmp_path, capsys):
    path = numbered(tmp_path / "b.txt", 3)
    insert_content_at_line(path, 0, "x")
    insert_content_at_line(path, 5, "x")
    assert capsys.readouterr().out == (
        "ERROR: Invalid line number: 0. Line numbers must be between 1 and 4 (inclusive).\n"
        "ERROR: Invalid line number: 5. Line numbers must be between 1 and 4 (inclusive).\n"
    )
    assert (tmp_path / "b.txt").read_text() == "Line 1\nLine 2\nLine 3"


def test_insert_into_a_missing_file_is_an_error(capsys):
    insert_content_at_line("unknown file", 1, "REPLACE TEXT")
    assert capsys.readouterr().out == "ERROR: Invalid path or file name.\n"


def test_insert_with_no_file_name_is_an_error(capsys):
    insert_content_at_line("", 1, "x")
    assert capsys.readouterr().out == "ERROR: Invalid file name.\n"


def test_insert_into_a_directory_is_an_error(tmp_path, capsys):
    insert_content_at_line(str(tmp_path), 1, "x")
    assert capsys.readouterr().out == f"ERROR: File {tmp_path} not found.\n"


# ---------------------------------------------------------------------------------- append_file


def test_append_adds_lines_after_the_last_one(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 2)
    append_file(path, content="APPENDED TEXT")
    assert capsys.readouterr().out == edited(path, ["Line 1", "Line 2", "APPENDED TEXT"], 2)
    assert (tmp_path / "a.txt").read_text() == "Line 1\nLine 2\nAPPENDED TEXT\n"


def test_append_to_a_created_file_replaces_its_empty_line(tmp_path, capsys):
    path = str(tmp_path / "a3.txt")
    create_file(path)
    open_file(path)
    capsys.readouterr()
    append_file(path, content="APPENDED TEXT1\nAPPENDED TEXT2\nAPPENDED TEXT3")
    assert capsys.readouterr().out == edited(path, ["APPENDED TEXT1", "APPENDED TEXT2", "APPENDED TEXT3"], 1)


def test_append_to_a_missing_file_is_an_error(capsys):
    append_file("unknown file", content="APPENDED TEXT")
    assert capsys.readouterr().out == "ERROR: Invalid path or file name.\n"


def test_append_to_a_binary_file_is_an_error(tmp_path, capsys):
    (tmp_path / "b.bin").write_bytes(b"\x00x")
    append_file(str(tmp_path / "b.bin"), "y")
    assert capsys.readouterr().out == (
        f"ERROR: File {tmp_path / 'b.bin'} is a binary file; only text files can be opened or edited.\n"
    )
    assert (tmp_path / "b.bin").read_bytes() == b"\x00x"


def test_a_path_that_is_not_text_reads_as_its_str(capsys):
    append_file(None, "x")
    edit_file_by_replace(None, "a", "b")
    assert capsys.readouterr().out == "ERROR: Invalid path or file name.\nERROR: File None not found.\n"
