"""search_dir, search_file, find_file: matches, limits and errors in OpenHands' texts."""

from __future__ import annotations

from corral_skills import find_file, open_file, search_dir, search_file

from .helpers import numbered

FIVE = "Line 1\nLine 2\nLine 3\nLine 4\nLine 5\n"


def test_search_dir_lists_each_matching_line(tmp_path, capsys):
    for i in range(1, 101):
        (tmp_path / f"a{i}.txt").write_text(FIVE + ("bingo" if i == 50 else ""))
    search_dir("bingo", str(tmp_path))
    assert capsys.readouterr().out == (
        f'[Found 1 matches for "bingo" in {tmp_path}]\n'
        f"{tmp_path}/a50.txt (Line 6): bingo\n"
        f'[End of matches for "bingo" in {tmp_path}]\n'
    )


def test_search_dir_goes_into_subdirectories_in_sorted_order(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.py").write_text("  needle = 1\n")
    (tmp_path / "a.py").write_text("needle\nno\nneedle again\n")
    search_dir("needle", str(tmp_path))
    assert capsys.readouterr().out == (
        f'[Found 3 matches for "needle" in {tmp_path}]\n'
        f"{tmp_path}/a.py (Line 1): needle\n"
        f"{tmp_path}/a.py (Line 3): needle again\n"
        f"{tmp_path}/b/x.py (Line 1): needle = 1\n"
        f'[End of matches for "needle" in {tmp_path}]\n'
    )


def test_search_dir_skips_hidden_and_binary_files_and_hidden_directories(tmp_path, capsys):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("needle\n")
    (tmp_path / ".env").write_text("needle\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00needle\n")
    search_dir("needle", str(tmp_path))
    assert capsys.readouterr().out == f'No matches found for "needle" in {tmp_path}\n'


def test_search_dir_without_matches_says_so(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(FIVE)
    search_dir("non-exist", str(tmp_path))
    assert capsys.readouterr().out == f'No matches found for "non-exist" in {tmp_path}\n'


def test_search_dir_with_matches_in_over_100_files_asks_for_a_narrower_search(tmp_path, capsys):
    for i in range(1, 1000):
        (tmp_path / f"a{i}.txt").write_text(FIVE)
    search_dir("Line 5", str(tmp_path))
    assert capsys.readouterr().out == (
        f'More than 999 files matched for "Line 5" in {tmp_path}. Please narrow your search.\n'
    )


def test_search_dir_lists_matches_from_exactly_100_files(tmp_path, capsys):
    for i in range(100):
        (tmp_path / f"a{i:03}.txt").write_text("hit\n")
    search_dir("hit", str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'[Found 100 matches for "hit" in {tmp_path}]' and len(out) == 102


def test_search_dir_defaults_to_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a50.txt").write_text(FIVE + "bingo")
    search_dir("bingo")
    assert capsys.readouterr().out == (
        '[Found 1 matches for "bingo" in ./]\n./a50.txt (Line 6): bingo\n[End of matches for "bingo" in ./]\n'
    )


def test_search_dir_of_a_missing_directory_is_an_error(capsys):
    search_dir("x", "/unexist/dir")
    assert capsys.readouterr().out == "ERROR: Directory /unexist/dir not found\n"


def test_search_file_lists_each_matching_line(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 5)
    search_file("Line 5", path)
    assert capsys.readouterr().out == (
        f'[Found 1 matches for "Line 5" in {path}]\nLine 5: Line 5\n[End of matches for "Line 5" in {path}]\n'
    )


def test_search_file_without_a_path_searches_the_open_file(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 12)
    open_file(path)
    capsys.readouterr()
    search_file("Line 1")
    assert capsys.readouterr().out == (
        f'[Found 4 matches for "Line 1" in {path}]\n'
        "Line 1: Line 1\nLine 10: Line 10\nLine 11: Line 11\nLine 12: Line 12\n"
        f'[End of matches for "Line 1" in {path}]\n'
    )


def test_search_file_without_matches_says_so(tmp_path, capsys):
    path = numbered(tmp_path / "a.txt", 5)
    search_file("Line 6", path)
    assert capsys.readouterr().out == f'[No matches found for "Line 6" in {path}]\n'


def test_search_file_of_a_missing_file_is_an_error(capsys):
    search_file("Line 6", "/unexist/path/a.txt")
    assert capsys.readouterr().out == "ERROR: File /unexist/path/a.txt not found.\n"


def test_search_file_with_no_file_open_is_an_error(capsys):
    search_file("x")
    assert capsys.readouterr().out == "ERROR: No file specified or open. Use the open_file function first.\n"


def test_find_file_lists_files_whose_name_contains_the_text(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "sub" / "data.txt.bak").write_text("")
    (tmp_path / "b.py").write_text("")
    find_file(".txt", str(tmp_path))
    assert capsys.readouterr().out == (
        f'[Found 2 matches for ".txt" in {tmp_path}]\n'
        f"{tmp_path}/a.txt\n{tmp_path}/sub/data.txt.bak\n"
        f'[End of matches for ".txt" in {tmp_path}]\n'
    )


def test_find_file_defaults_to_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("")
    find_file("a.txt")
    assert capsys.readouterr().out == '[Found 1 matches for "a.txt" in ./]\n./a.txt\n[End of matches for "a.txt" in ./]\n'


def test_find_file_without_matches_says_so(tmp_path, capsys):
    find_file("nonexist.txt", str(tmp_path))
    assert capsys.readouterr().out == f'[No matches found for "nonexist.txt" in {tmp_path}]\n'


def test_find_file_of_a_missing_directory_is_an_error(capsys):
    find_file("a.txt", "/unexist/dir")
    assert capsys.readouterr().out == "ERROR: Directory /unexist/dir not found\n"
