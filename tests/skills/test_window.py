"""open_file, goto_line, scroll_down, scroll_up, create_file: the window and its texts."""

from __future__ import annotations

from corral_skills import create_file, goto_line, open_file, scroll_down, scroll_up

from .helpers import SCROLL_HINT, numbered, window


def test_open_file_shows_a_short_file_whole(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 5)
    open_file(path)
    assert capsys.readouterr().out == f"[File: {path} (5 lines total)]\n" + window(1, 5, 5)


def test_open_file_keeps_indentation(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Line 1\n    Line 2\nLine 3\n")
    open_file(str(tmp_path / "a.txt"))
    assert capsys.readouterr().out.splitlines()[3] == "2|    Line 2"


def test_open_file_with_context_lines_shows_that_many_and_the_scroll_hint(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path, 1, 50)
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(1, 50, 1000) + SCROLL_HINT


def test_open_file_centres_the_line_with_half_a_window_each_side(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 999)
    open_file(path, 800, 100)
    assert capsys.readouterr().out == f"[File: {path} (999 lines total)]\n" + window(750, 850, 999) + SCROLL_HINT


def test_open_file_near_the_start_fills_the_window_from_line_one(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path, 30)
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(1, 100, 1000) + SCROLL_HINT


def test_open_file_near_the_end_fills_the_window_from_the_last_line(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path, 990)
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(901, 1000, 1000)


def test_context_lines_are_capped_at_100_and_a_bad_value_means_100(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path, 1, 500)
    capped = capsys.readouterr().out
    open_file(path, 1, 0)
    assert capped == capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(1, 100, 1000) + SCROLL_HINT


def test_open_file_of_a_relative_path_shows_the_absolute_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    numbered(tmp_path / "a.txt", 2)
    open_file("a.txt")
    assert capsys.readouterr().out.startswith(f"[File: {tmp_path / 'a.txt'} (2 lines total)]\n")


def test_open_file_of_an_empty_file_shows_one_empty_line(tmp_path, capsys):
    (tmp_path / "e.txt").write_text("")
    open_file(str(tmp_path / "e.txt"))
    assert capsys.readouterr().out == f"[File: {tmp_path / 'e.txt'} (1 lines total)]\n" + window(1, 1, 1, text=lambda i: "")


def test_open_file_shows_crlf_lines_without_the_carriage_return(tmp_path, capsys):
    (tmp_path / "w.txt").write_bytes(b"one\r\ntwo\r\n")
    open_file(str(tmp_path / "w.txt"))
    assert capsys.readouterr().out.splitlines()[2:4] == ["1|one", "2|two"]


def test_open_file_of_a_missing_file_is_an_error(capsys):
    open_file("/unexist/path/a.txt")
    assert capsys.readouterr().out == "ERROR: File /unexist/path/a.txt not found.\n"


def test_open_file_of_a_directory_is_an_error(tmp_path, capsys):
    open_file(str(tmp_path))
    assert capsys.readouterr().out == f"ERROR: File {tmp_path} not found.\n"


def test_open_file_past_the_last_line_is_an_error(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 9)
    open_file(path, 10)
    assert capsys.readouterr().out == "ERROR: Line number must be between 1 and 9\n"


def test_open_file_of_a_binary_file_is_an_error(tmp_path, capsys):
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02")
    open_file(str(tmp_path / "b.bin"))
    assert capsys.readouterr().out == (
        f"ERROR: File {tmp_path / 'b.bin'} is a binary file; only text files can be opened or edited.\n"
    )


def test_goto_line_centres_the_line(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path)
    capsys.readouterr()
    goto_line(500)
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(450, 550, 1000)


def test_goto_line_out_of_range_is_an_error(tmp_path, capsys):
    open_file(numbered(tmp_path / "a.txt", 4))
    capsys.readouterr()
    goto_line(-1)
    goto_line(100)
    assert capsys.readouterr().out == (
        "ERROR: Line number must be between 1 and 4.\nERROR: Line number must be between 1 and 4.\n"
    )


def test_scroll_down_moves_a_window_on_from_the_current_line(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path)
    capsys.readouterr()
    scroll_down()
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(101, 201, 1000)
    scroll_down()
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(201, 301, 1000)


def test_scroll_up_moves_a_window_back(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 1000)
    open_file(path, 300)
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(250, 350, 1000) + SCROLL_HINT
    scroll_up()
    assert capsys.readouterr().out == f"[File: {path} (1000 lines total)]\n" + window(200, 300, 1000)


def test_scroll_in_a_short_file_shows_it_whole(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 9)
    open_file(path)
    whole = capsys.readouterr().out
    scroll_down()
    assert capsys.readouterr().out == whole
    scroll_up()
    assert capsys.readouterr().out == whole


def test_goto_and_scroll_without_an_open_file_are_errors(capsys):
    goto_line(1)
    scroll_down()
    scroll_up()
    assert capsys.readouterr().out == "ERROR: No file open. Use the open_file function first.\n" * 3


def test_a_removed_current_file_is_no_open_file(tmp_path, capsys):
    open_file(numbered(tmp_path / "a.txt", 3))
    (tmp_path / "a.txt").unlink()
    capsys.readouterr()
    scroll_down()
    assert capsys.readouterr().out == "ERROR: No file open. Use the open_file function first.\n"


def test_create_file_makes_a_one_line_file_and_opens_it(tmp_path, capsys):
    path = str(tmp_path / "new.txt")
    create_file(path)
    assert capsys.readouterr().out == (
        f"[File: {path} (1 lines total)]\n" + window(1, 1, 1, text=lambda i: "") + f"[File {path} created.]\n"
    )
    assert (tmp_path / "new.txt").read_text() == "\n"


def test_create_file_of_an_existing_file_is_an_error(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("keep")
    create_file(str(tmp_path / "a.txt"))
    assert capsys.readouterr().out == f"ERROR: File '{tmp_path / 'a.txt'}' already exists.\n"
    assert (tmp_path / "a.txt").read_text() == "keep"


def test_create_file_in_a_missing_directory_is_an_error(capsys):
    create_file("/unexist/path/a.txt")
    assert capsys.readouterr().out == "ERROR: Could not create file /unexist/path/a.txt: No such file or directory\n"


def test_open_file_without_a_line_number_starts_at_the_top(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 3)
    open_file(path, None)
    assert capsys.readouterr().out == f"[File: {path} (3 lines total)]\n" + window(1, 3, 3)
