"""file_read / file_write: byte-exact, atomic, every failure an Error with a stable code."""

from __future__ import annotations

import base64
import errno
import os
import stat

import pytest

from executor._files import BLOCK_BYTES, SNIFF_BYTES, atomic_write, file_read, file_write, translate_os_error
from protocol import Error, FileContent, FileRead, FileWrite, FileWritten, codes

from . import peak_rss

SID = "sess-1"
MiB = 1024 * 1024


async def read(tmp_path, path, **kw) -> FileContent | Error:
    return await file_read(FileRead(id="act-1", path=str(path), **kw), cwd=str(tmp_path), session_id=SID)


async def write(tmp_path, path, content, **kw) -> FileWritten | Error:
    return await file_write(FileWrite(id="act-2", path=str(path), content=content, **kw), cwd=str(tmp_path), session_id=SID)


def expect_error(obs, code: str, phrase: str) -> str:
    assert isinstance(obs, Error), obs
    assert obs.code == code, obs
    assert phrase in obs.message, obs.message
    return obs.message


# ------------------------------------------------------------------------------ reading


async def test_read_returns_text_with_total_lines_and_answers_the_action(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    obs = await read(tmp_path, tmp_path / "a.txt")
    assert isinstance(obs, FileContent)
    assert obs.content == "one\ntwo\nthree\n"
    assert obs.total_lines == 3
    assert obs.encoding == "text"
    assert obs.path == str(tmp_path / "a.txt")
    assert (obs.cause, obs.session_id) == ("act-1", SID)
    assert obs.id and obs.id != "act-1"


async def test_read_counts_a_last_line_without_newline(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo")
    obs = await read(tmp_path, tmp_path / "a.txt")
    assert isinstance(obs, FileContent)
    assert obs.total_lines == 2


async def test_read_of_empty_file_is_empty_with_zero_lines(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    obs = await read(tmp_path, tmp_path / "empty")
    assert isinstance(obs, FileContent)
    assert (obs.content, obs.total_lines) == ("", 0)


async def test_read_resolves_relative_path_against_cwd(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rel.txt").write_text("hi\n")
    obs = await read(tmp_path, "sub/rel.txt")
    assert isinstance(obs, FileContent)
    assert obs.content == "hi\n"
    assert obs.path == str(tmp_path / "sub" / "rel.txt")


async def test_read_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "notes.txt").write_text("home\n")
    obs = await read(tmp_path / "elsewhere", "~/notes.txt")
    assert isinstance(obs, FileContent)
    assert obs.content == "home\n"


async def test_read_line_range_is_one_based_and_inclusive(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3\nl4\nl5\n")
    obs = await read(tmp_path, "a.txt", start_line=2, end_line=4)
    assert isinstance(obs, FileContent)
    assert obs.content == "l2\nl3\nl4\n"
    assert obs.total_lines == 5


async def test_read_start_line_alone_reads_to_the_end(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3")
    obs = await read(tmp_path, "a.txt", start_line=2)
    assert isinstance(obs, FileContent)
    assert obs.content == "l2\nl3"


async def test_read_end_line_alone_reads_from_the_start(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3\n")
    obs = await read(tmp_path, "a.txt", end_line=2)
    assert isinstance(obs, FileContent)
    assert obs.content == "l1\nl2\n"


async def test_read_end_line_past_the_end_stops_at_the_last_line(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\n")
    obs = await read(tmp_path, "a.txt", start_line=2, end_line=99)
    assert isinstance(obs, FileContent)
    assert (obs.content, obs.total_lines) == ("l2\n", 2)


async def test_read_start_line_below_one_is_invalid(tmp_path):
    (tmp_path / "a.txt").write_text("l1\n")
    obs = await read(tmp_path, "a.txt", start_line=0)
    expect_error(obs, codes.INVALID_ARGUMENT, "start_line must be 1 or more")


async def test_read_end_line_below_one_is_invalid(tmp_path):
    (tmp_path / "a.txt").write_text("l1\n")
    obs = await read(tmp_path, "a.txt", end_line=-3)
    expect_error(obs, codes.INVALID_ARGUMENT, "end_line must be 1 or more")


async def test_read_end_line_before_start_line_is_invalid(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\nl3\n")
    obs = await read(tmp_path, "a.txt", start_line=3, end_line=2)
    expect_error(obs, codes.INVALID_ARGUMENT, "end_line 2 is before start_line 3")


async def test_read_start_line_beyond_the_end_is_invalid(tmp_path):
    (tmp_path / "a.txt").write_text("l1\nl2\n")
    obs = await read(tmp_path, "a.txt", start_line=5)
    expect_error(obs, codes.INVALID_ARGUMENT, "start_line 5 is beyond the end")
    assert "has 2 lines" in obs.message


async def test_read_missing_file_is_file_not_found(tmp_path):
    obs = await read(tmp_path, "nope.txt")
    expect_error(obs, codes.FILE_NOT_FOUND, str(tmp_path / "nope.txt"))


async def test_read_directory_is_refused_and_lists_its_entries(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.py").write_text("")
    (tmp_path / "d" / "pkg").mkdir()
    obs = await read(tmp_path, "d")
    message = expect_error(obs, codes.IS_A_DIRECTORY, "is a directory")
    assert "f.py" in message and "pkg/" in message


async def test_read_directory_listing_is_capped(tmp_path):
    for i in range(25):
        (tmp_path / f"f{i:02}").write_text("")
    obs = await read(tmp_path, str(tmp_path))
    message = expect_error(obs, codes.IS_A_DIRECTORY, "and 5 more")
    assert "f19" in message and "f20" not in message


async def test_read_file_with_nul_bytes_is_binary(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"abc\x00def")
    obs = await read(tmp_path, "b.bin")
    expect_error(obs, codes.BINARY_FILE, "encoding='base64'")


async def test_read_invalid_utf8_is_binary(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    obs = await read(tmp_path, "latin1.txt")
    expect_error(obs, codes.BINARY_FILE, "invalid UTF-8")


async def test_read_base64_returns_the_raw_bytes(tmp_path):
    raw = bytes(range(256))
    (tmp_path / "b.bin").write_bytes(raw)
    obs = await read(tmp_path, "b.bin", encoding="base64")
    assert isinstance(obs, FileContent)
    assert obs.encoding == "base64"
    assert base64.b64decode(obs.content) == raw


async def test_read_base64_refuses_line_ranges(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"x")
    obs = await read(tmp_path, "b.bin", encoding="base64", start_line=1)
    expect_error(obs, codes.INVALID_ARGUMENT, "only apply to encoding='text'")


async def test_read_over_max_bytes_is_too_large_and_suggests_a_line_range(tmp_path):
    (tmp_path / "big.txt").write_text("x" * 100 + "\n")
    obs = await file_read(FileRead(id="a", path="big.txt"), cwd=str(tmp_path), session_id=SID, max_bytes=50)
    message = expect_error(obs, codes.FILE_TOO_LARGE, "101 bytes")
    assert "start_line and end_line" in message


async def test_read_line_range_of_a_file_over_max_bytes_works(tmp_path):
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    obs = await file_read(
        FileRead(id="a", path="big.txt", start_line=500, end_line=501), cwd=str(tmp_path), session_id=SID, max_bytes=100
    )
    assert isinstance(obs, FileContent)
    assert obs.content == "line 500\nline 501\n"
    assert obs.total_lines == 1000


async def test_read_line_range_over_max_bytes_is_too_large(tmp_path):
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    obs = await file_read(
        FileRead(id="a", path="big.txt", start_line=1, end_line=900), cwd=str(tmp_path), session_id=SID, max_bytes=100
    )
    expect_error(obs, codes.FILE_TOO_LARGE, "ask for fewer lines")


async def test_read_base64_over_max_bytes_is_too_large(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\x00" * 90)
    obs = await file_read(
        FileRead(id="a", path="b.bin", encoding="base64"), cwd=str(tmp_path), session_id=SID, max_bytes=100
    )
    expect_error(obs, codes.FILE_TOO_LARGE, "120 bytes as base64")


async def test_read_fifo_is_refused_as_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    obs = await read(tmp_path, "pipe")
    expect_error(obs, codes.INVALID_ARGUMENT, "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_read_unreadable_file_is_permission_denied(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0)
    obs = await read(tmp_path, "secret")
    expect_error(obs, codes.PERMISSION_DENIED, "cannot access")


def test_permission_errors_translate_to_permission_denied():
    err = translate_os_error(PermissionError(errno.EACCES, "Permission denied"), "/x")
    assert (err.code, err.message) == (codes.PERMISSION_DENIED, "cannot access /x: Permission denied")


# ------------------------------------------------------------------------------ writing


async def test_write_is_byte_exact_without_adding_a_newline(tmp_path):
    obs = await write(tmp_path, "out.txt", "no newline")
    assert isinstance(obs, FileWritten)
    assert (tmp_path / "out.txt").read_bytes() == b"no newline"
    assert obs.size == 10
    assert (obs.path, obs.cause, obs.session_id) == (str(tmp_path / "out.txt"), "act-2", SID)


async def test_write_size_counts_utf8_bytes(tmp_path):
    obs = await write(tmp_path, "u.txt", "héllo ✓")
    assert isinstance(obs, FileWritten)
    assert obs.size == len("héllo ✓".encode()) == 10


async def test_write_keeps_crlf_and_tabs_as_given(tmp_path):
    await write(tmp_path, "w.txt", "a\r\n\tb\r\n")
    assert (tmp_path / "w.txt").read_bytes() == b"a\r\n\tb\r\n"


async def test_write_resolves_relative_path_against_cwd(tmp_path):
    obs = await write(tmp_path, "rel/out.txt", "x")
    assert isinstance(obs, FileWritten)
    assert obs.path == str(tmp_path / "rel" / "out.txt")
    assert (tmp_path / "rel" / "out.txt").read_text() == "x"


async def test_write_creates_missing_parent_directories(tmp_path):
    await write(tmp_path, tmp_path / "a" / "b" / "c.txt", "deep")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "deep"


async def test_write_base64_round_trips_binary_through_read(tmp_path):
    raw = bytes(range(256)) * 3
    obs = await write(tmp_path, "blob.bin", base64.b64encode(raw).decode(), encoding="base64")
    assert isinstance(obs, FileWritten)
    assert obs.size == len(raw)
    back = await read(tmp_path, "blob.bin", encoding="base64")
    assert isinstance(back, FileContent)
    assert base64.b64decode(back.content) == raw


async def test_write_bad_base64_is_invalid_and_writes_nothing(tmp_path):
    obs = await write(tmp_path, "blob.bin", "not base64!!", encoding="base64")
    expect_error(obs, codes.INVALID_ARGUMENT, "not valid base64")
    assert not (tmp_path / "blob.bin").exists()


async def test_write_replaces_existing_content_and_keeps_its_mode(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o751)
    await write(tmp_path, "run.sh", "new")
    assert script.read_text() == "new"
    assert stat.S_IMODE(script.stat().st_mode) == 0o751


async def test_write_leaves_no_temp_files(tmp_path):
    await write(tmp_path, "a.txt", "one")
    await write(tmp_path, "a.txt", "two")
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_atomic_write_removes_its_temp_file_when_writing_fails(tmp_path):
    (tmp_path / "a.txt").write_text("before")
    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "a.txt"), "str is not bytes")  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "before"


async def test_write_to_a_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    obs = await write(tmp_path, "d", "x")
    expect_error(obs, codes.IS_A_DIRECTORY, "is a directory")


async def test_write_under_a_file_is_invalid(tmp_path):
    (tmp_path / "f").write_text("")
    obs = await write(tmp_path, "f/child.txt", "x")
    expect_error(obs, codes.INVALID_ARGUMENT, "is a file")


async def test_write_through_a_symlink_updates_its_target(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    await write(tmp_path, "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "new"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_write_into_unwritable_directory_is_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        obs = await write(tmp_path, "locked/x.txt", "x")
    finally:
        locked.chmod(0o700)
    expect_error(obs, codes.PERMISSION_DENIED, "cannot access")


# ------------------------------------------------------------------ long lines, bounded memory


def one_line_file(path, size: int, tail: bytes = b"") -> None:
    """A text head, then a sparse run of NUL bytes with no newline: one line of ``size`` bytes, made at once."""
    with open(path, "wb") as f:
        f.write(b"a" * SNIFF_BYTES)
        f.truncate(size)
        f.seek(size)
        f.write(tail)


async def test_a_range_inside_a_huge_line_fails_naming_the_line_and_holds_no_more_than_the_limit(tmp_path):
    one_line_file(tmp_path / "huge.txt", 200 * MiB)
    before = peak_rss.reset()
    obs = await read(tmp_path, "huge.txt", start_line=1, end_line=1)
    grown = peak_rss.grown_mb(before)
    expect_error(obs, codes.FILE_TOO_LARGE, "line 1 of")
    assert "alone is over the 900000-byte limit" in obs.message
    assert grown < 30, f"peak RSS grew by {grown:.0f} MB"


async def test_a_range_after_a_huge_line_counts_it_without_holding_it(tmp_path):
    one_line_file(tmp_path / "huge.txt", 200 * MiB, b"\nsecond\n")
    before = peak_rss.reset()
    obs = await read(tmp_path, "huge.txt", start_line=2)
    grown = peak_rss.grown_mb(before)
    assert isinstance(obs, FileContent) and (obs.content, obs.total_lines) == ("second\n", 2)
    assert grown < 30, f"peak RSS grew by {grown:.0f} MB"


async def test_a_range_that_passes_the_limit_names_the_line_where_it_does(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))  # 7 bytes each up to 9
    obs = await file_read(FileRead(id="a", path="a.txt", start_line=5, end_line=50), cwd=str(tmp_path),
                          session_id=SID, max_bytes=30)
    message = expect_error(obs, codes.FILE_TOO_LARGE, "lines 5-9 of")
    assert "lines 5-8 fit" in message


@pytest.mark.parametrize(("start", "end"), [(1, 1), (1, None), (2, 3), (3, 3), (4, 9), (5, None), (6, 6)])
async def test_ranges_across_block_boundaries_match_a_plain_split(tmp_path, start, end):
    lengths = [10, BLOCK_BYTES - 12, 3, 2 * BLOCK_BYTES + 5, 0, 7]
    text = "".join("x" * n + "\n" for n in lengths) + "last"  # 7 lines, the last without a newline
    (tmp_path / "a.txt").write_text(text)
    obs = await file_read(FileRead(id="a", path="a.txt", start_line=start, end_line=end), cwd=str(tmp_path),
                          session_id=SID, max_bytes=10 * BLOCK_BYTES)
    lines = text.splitlines(keepends=True)
    assert isinstance(obs, FileContent)
    assert (obs.content, obs.total_lines) == ("".join(lines[start - 1 : end]), 7)


# ------------------------------------------------------------------ paths the OS refuses


async def test_a_nul_in_a_read_path_is_invalid_argument(tmp_path):
    expect_error(await read(tmp_path, "a\x00b"), codes.INVALID_ARGUMENT, "NUL byte")


async def test_a_nul_in_a_write_path_is_invalid_argument(tmp_path):
    expect_error(await write(tmp_path, "a\x00b", "x"), codes.INVALID_ARGUMENT, "NUL byte")


# ------------------------------------------------------------------ append


async def test_append_adds_to_the_end_of_a_file(tmp_path):
    (tmp_path / "log.txt").write_text("one\n")
    obs = await write(tmp_path, "log.txt", "two\n", append=True)
    assert isinstance(obs, FileWritten) and obs.size == 4
    assert (tmp_path / "log.txt").read_text() == "one\ntwo\n"


async def test_append_creates_a_missing_file_and_its_parents(tmp_path):
    obs = await write(tmp_path, "new/deeper/log.txt", "first", append=True)
    assert isinstance(obs, FileWritten) and obs.path == str(tmp_path / "new" / "deeper" / "log.txt")
    assert (tmp_path / "new" / "deeper" / "log.txt").read_text() == "first"


async def test_append_of_base64_adds_the_decoded_bytes(tmp_path):
    parts = [bytes(range(0, 128)), bytes(range(128, 256)), b"\x00\xff"]
    for part in parts:
        obs = await write(tmp_path, "b.bin", base64.b64encode(part).decode(), encoding="base64", append=True)
        assert isinstance(obs, FileWritten) and obs.size == len(part)
    assert (tmp_path / "b.bin").read_bytes() == b"".join(parts)


async def test_append_of_bad_base64_is_invalid_and_changes_nothing(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"keep")
    expect_error(await write(tmp_path, "b.bin", "not base64!", encoding="base64", append=True),
                 codes.INVALID_ARGUMENT, "not valid base64")
    assert (tmp_path / "b.bin").read_bytes() == b"keep"


async def test_append_to_a_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    expect_error(await write(tmp_path, "d", "x", append=True), codes.IS_A_DIRECTORY, "is a directory")


async def test_append_under_a_file_is_invalid(tmp_path):
    (tmp_path / "f").write_text("")
    expect_error(await write(tmp_path, "f/g.txt", "x", append=True), codes.INVALID_ARGUMENT, "parent")


async def test_append_keeps_the_files_mode(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o751)
    await write(tmp_path, "run.sh", "echo hi\n", append=True)
    assert stat.S_IMODE(os.stat(tmp_path / "run.sh").st_mode) == 0o751
