"""`corral audit keygen | verify | export` on the log of a real deployment (local worker, signed audit)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import stat

from click.testing import CliRunner
import pytest

from actors import stream_name
from cli.main import cli
from cli.up import Deployment, UpConfig
from protocol import Client, Subjects


def corral(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def key(tmp_path) -> str:  # type: ignore[no-untyped-def]
    result = corral("audit", "keygen", str(tmp_path / "audit.key"))
    assert result.exit_code == 0, result.output
    return str(tmp_path / "audit.key")


@pytest.fixture
async def audited(nats_server, tmp_path, key):  # type: ignore[no-untyped-def]
    """A deployment whose audit writer signs; one session ran `echo audited` and closed."""
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="local", warm_pool=0,
                      audit_dir=str(tmp_path / "audit"), audit_key=key)
    async with Deployment(config) as dep:
        async with await Client.connect(dep.url) as client:
            session = await client.create_session()
            out = await session.cmd("echo audited")
            assert out.content == "audited\n"
            await session.close()
            info = await client.nats.jetstream().stream_info(stream_name(Subjects()))
        assert dep.audit is not None
        await dep.audit.wait_for_seq(info.state.last_seq)
        yield tmp_path / "audit", session.session_id


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_overwrite(key):
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert Path(key + ".pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    result = corral("audit", "keygen", key)
    assert result.exit_code == 1 and "audit_key_exists" in result.output


async def test_verify_checks_a_deployments_signed_log_and_prints_one_line(audited, key):
    directory, _sid = audited
    result = corral("audit", "verify", str(directory), "--key", key + ".pub")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ") and "every signature verified" in result.output
    assert len(result.output.splitlines()) == 1


async def test_export_writes_the_sessions_whole_trail_in_order(audited, key, tmp_path):
    directory, sid = audited
    result = corral("audit", "export", "--session", sid, str(directory), "-o", str(tmp_path / "trail.jsonl"),
                    "--key", key + ".pub")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "trail.jsonl").read_text().splitlines()]
    assert {r["session_id"] for r in records} == {sid}
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    kinds = [(r["channel"], r["kind"]) for r in records]
    assert ("action", "cmd_run") in kinds and ("obs", "cmd_output") in kinds and ("status", "closed") in kinds
    assert kinds.index(("action", "cmd_run")) < kinds.index(("obs", "cmd_output"))
    assert any(r["event"].get("content") == "audited\n" for r in records)


async def test_verify_of_an_edited_log_names_the_record_and_exits_non_zero(audited):
    directory, _sid = audited
    (path,) = directory.glob("audit-*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"tenant":""', b'"tenant":"x"')
    path.write_bytes(b"".join(lines))
    result = CliRunner().invoke(cli, ["audit", "verify", str(directory)])
    assert result.exit_code == 1
    assert f"FAIL {path.name}:2: seq 2 edited:" in result.output


async def test_verify_with_another_key_fails(audited, tmp_path):
    directory, _sid = audited
    corral("audit", "keygen", str(tmp_path / "other.key"))
    result = CliRunner().invoke(cli, ["audit", "verify", str(directory), "--key", str(tmp_path / "other.key.pub")])
    assert result.exit_code == 1 and ":1: seq 1 bad_signature:" in result.output


async def test_export_of_a_session_the_log_does_not_hold_fails(audited):
    directory, _sid = audited
    result = CliRunner().invoke(cli, ["audit", "export", "--session", "snope", str(directory), "-o", "-"])
    assert result.exit_code == 1 and "unknown_session" in result.output


def test_verify_of_a_directory_without_a_log_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["audit", "verify", str(tmp_path)])
    assert result.exit_code == 1 and "audit_no_log" in result.output


def test_up_refuses_a_key_that_is_not_an_ed25519_private_key(tmp_path):
    (tmp_path / "bad.key").write_text("not a key\n")
    result = CliRunner().invoke(cli, ["up", "--data-dir", str(tmp_path / "d"), "--audit-key", str(tmp_path / "bad.key"),
                                      "--port", "0"])
    assert result.exit_code == 1 and "audit_key_invalid" in result.output
