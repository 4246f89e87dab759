"""The audit writer against a real nats-server: what it records, and that no restart loses or repeats a record."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal

import pytest

from actors import ensure_stream
from actors.audit import (
    AUDIT_LOCKED,
    AUDIT_LOG_CORRUPT,
    AUDIT_STREAM_RESET,
    GENESIS,
    AuditError,
    AuditWriter,
    AuditWriterConfig,
    digest,
    log_files,
    split_line,
    verify_log,
)
from actors.embedded import EmbeddedNats
from protocol import Subjects, connect_nats

from .events import publish_session, publish_turn, running

SUBJECTS = Subjects()


@pytest.fixture
async def nc(nats_server):
    conn = await connect_nats(nats_server.url, name="audit-test")
    await ensure_stream(conn.jetstream(), SUBJECTS)
    yield conn
    await conn.close()


def lines_of(directory) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for path in log_files(str(directory)) for line in open(path, "rb")]


def writer_for(nc, directory, **config) -> AuditWriter:  # type: ignore[no-untyped-def]
    clock = config.pop("clock", None)
    writer_config = AuditWriterConfig(directory=str(directory), **config)
    return AuditWriter(nc, SUBJECTS, writer_config, **({"clock": clock} if clock else {}))


def assert_contiguous(records: list[dict], last: int) -> None:
    assert [r["seq"] for r in records] == list(range(1, last + 1))


async def test_every_action_observation_decision_and_status_is_recorded_and_chained(nc, tmp_path):
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        last = await publish_session(nc.jetstream(), SUBJECTS, "s1", turns=3)
        await writer.wait_for_seq(last)
    records = lines_of(tmp_path / "audit")
    assert_contiguous(records, last)
    assert [(r["channel"], r["kind"]) for r in records] == [
        ("status", "ready"), *[("action", "cmd_run"), ("obs", "cmd_output")] * 3, ("action", "cmd_run"),
        ("obs", "confirmation_required"), ("obs", "rejected"), ("status", "closed")]
    assert {r["session_id"] for r in records} == {"s1"} and {r["tenant"] for r in records} == {""}
    assert records[1]["event"]["command"] == "echo 0" and records[1]["subject"] == "corral.session.s1.action.cmd_run"
    assert records[0]["prev"] == GENESIS and all("sig" not in r for r in records)
    raw = open(log_files(str(tmp_path / "audit"))[0], "rb").read().splitlines()
    for before, after in zip(raw, records[1:]):
        assert after["prev"] == digest(split_line(before)[0])
    assert verify_log(str(tmp_path / "audit")).ok


async def test_a_tenants_session_is_recorded_with_its_tenant(nc, tmp_path):
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        await publish_turn(nc.jetstream(), SUBJECTS, "own", "echo own")
        last = await publish_turn(nc.jetstream(), SUBJECTS.for_tenant("acme"), "s9", "echo tenant")
        await writer.wait_for_seq(last)
    records = lines_of(tmp_path / "audit")
    assert [(r["tenant"], r["session_id"], r["channel"]) for r in records] == [
        ("", "own", "action"), ("", "own", "obs"), ("acme", "s9", "action"), ("acme", "s9", "obs")]
    assert records[2]["subject"] == "corral.t.acme.session.s9.action.cmd_run"


async def test_signed_records_carry_a_signature_the_public_key_verifies(nc, tmp_path):
    from actors.audit import generate_key_pair, load_public_key

    private, public = generate_key_pair(str(tmp_path / "key"))
    writer = writer_for(nc, tmp_path / "audit", key_file=private)
    async with running(writer):
        await writer.wait_for_seq(await publish_session(nc.jetstream(), SUBJECTS, "s1", turns=2))
    assert all(r["sig"] for r in lines_of(tmp_path / "audit"))
    report = verify_log(str(tmp_path / "audit"), public_key=load_public_key(public))
    assert report.ok and report.signatures_checked and report.signed == report.records == 9


async def test_a_restarted_writer_continues_after_its_last_record_without_gap_or_duplicate(nc, tmp_path):
    js = nc.jetstream()
    first = writer_for(nc, tmp_path / "audit")
    async with running(first):
        await first.wait_for_seq(await publish_session(js, SUBJECTS, "s1", turns=3))
    for n in range(5):  # while no writer runs
        last = await publish_turn(js, SUBJECTS, "s2", f"echo {n}")
    second = writer_for(nc, tmp_path / "audit")
    async with running(second):
        await second.wait_for_seq(last)
    assert_contiguous(lines_of(tmp_path / "audit"), last)
    assert verify_log(str(tmp_path / "audit")).ok


class CrashBeforeAck(AuditWriter):
    """Dies after its first batch is on disk and before that batch is acknowledged."""

    async def _ack(self, last):  # type: ignore[no-untyped-def]
        raise RuntimeError("crashed between write and ack")


async def test_a_crash_between_write_and_ack_duplicates_nothing(nc, tmp_path):
    js = nc.jetstream()
    last = await publish_session(js, SUBJECTS, "s1", turns=3)
    crashing = CrashBeforeAck(nc, SUBJECTS, AuditWriterConfig(directory=str(tmp_path / "audit")))
    with pytest.raises(RuntimeError, match="between write and ack"):
        await crashing.run()
    assert [r["seq"] for r in lines_of(tmp_path / "audit")] == list(range(1, last + 1))  # written, never acked
    more = await publish_turn(js, SUBJECTS, "s1", "echo after the crash")
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        await writer.wait_for_seq(more)
    assert_contiguous(lines_of(tmp_path / "audit"), more)
    assert verify_log(str(tmp_path / "audit")).ok


class NeverAcks(AuditWriter):
    """Every ack lost (as in a broker hiccup): the broker redelivers each batch after ack_wait."""

    async def _ack(self, last):  # type: ignore[no-untyped-def]
        return None


async def test_redelivered_messages_are_skipped_not_written_twice(nc, tmp_path):
    js = nc.jetstream()
    writer = NeverAcks(nc, SUBJECTS, AuditWriterConfig(directory=str(tmp_path / "audit"), ack_wait_s=0.5))
    async with running(writer):
        last = await publish_session(js, SUBJECTS, "s1", turns=2)
        await writer.wait_for_seq(last)
        async with asyncio.timeout(10):
            while writer.statistics()["skipped"] < last:  # the broker redelivered the whole unacked batch
                await asyncio.sleep(0.05)
    assert_contiguous(lines_of(tmp_path / "audit"), last)


async def test_a_broker_restart_loses_nothing(nats_server, nc, tmp_path):
    js = nc.jetstream()
    writer = writer_for(nc, tmp_path / "audit", retry_s=0.1, gather_s=1.0)
    async with running(writer):
        written = await publish_session(js, SUBJECTS, "s1", turns=2)
        await writer.wait_for_seq(written)
        for n in range(20):  # published while the writer lets a batch gather: not yet read when the broker goes
            await publish_turn(js, SUBJECTS, "s2", f"echo {n}")
        assert writer.last_seq == written
        await nats_server.stop()
        await nats_server.start()
        async with asyncio.timeout(10):
            while not nc.is_connected:
                await asyncio.sleep(0.05)
        last = await publish_turn(js, SUBJECTS, "s3", "echo after the restart")
        await writer.wait_for_seq(last, timeout_s=20)
    assert_contiguous(lines_of(tmp_path / "audit"), last)
    assert verify_log(str(tmp_path / "audit")).ok


async def test_day_rollover_starts_a_new_file_and_the_chain_continues_across_it(nc, tmp_path):
    now = [datetime.datetime(2026, 12, 1, 23, 59, 59, tzinfo=datetime.timezone.utc)]
    writer = writer_for(nc, tmp_path / "audit", clock=lambda: now[0])
    js = nc.jetstream()
    async with running(writer):
        await writer.wait_for_seq(await publish_turn(js, SUBJECTS, "s1", "echo late"))
        now[0] += datetime.timedelta(seconds=2)
        last = await publish_turn(js, SUBJECTS, "s1", "echo early")
        await writer.wait_for_seq(last)
    files = log_files(str(tmp_path / "audit"))
    assert [os.path.basename(f) for f in files] == ["audit-2026-12-01.jsonl", "audit-2026-12-02.jsonl"]
    day1, day2 = (open(f, "rb").read().splitlines() for f in files)
    assert len(day1) == len(day2) == 2
    assert json.loads(day2[0])["prev"] == digest(split_line(day1[-1])[0])
    report = verify_log(str(tmp_path / "audit"))
    assert report.ok and report.files == 2 and report.records == 4


async def test_a_torn_last_line_is_cut_off_and_the_record_written_again_byte_for_byte(nc, tmp_path):
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        last = await publish_session(nc.jetstream(), SUBJECTS, "s1", turns=2)
        await writer.wait_for_seq(last)
    path = log_files(str(tmp_path / "audit"))[0]
    whole = open(path, "rb").read()
    cut = len(whole) - 40  # a crash in the middle of writing the last record
    with open(path, "r+b") as f:
        f.truncate(cut)
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        await writer.wait_for_seq(last)
    assert open(path, "rb").read() == whole
    torn = [n for n in os.listdir(tmp_path / "audit") if ".torn-" in n]
    assert len(torn) == 1 and (tmp_path / "audit" / torn[0]).read_bytes() == whole[whole.rfind(b"\n", 0, cut) + 1:cut]


async def test_a_second_writer_on_the_same_directory_is_refused(nc, tmp_path):
    first = writer_for(nc, tmp_path / "audit")
    await first.open()
    with pytest.raises(AuditError) as caught:
        await writer_for(nc, tmp_path / "audit").open()
    assert caught.value.code == AUDIT_LOCKED


async def test_a_log_whose_last_line_is_not_a_record_refuses_to_start(nc, tmp_path):
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "audit-2026-12-01.jsonl").write_bytes(b'{"not": "a record"}\n')
    with pytest.raises(AuditError) as caught:
        await writer_for(nc, tmp_path / "audit").open()
    assert caught.value.code == AUDIT_LOG_CORRUPT


async def test_a_log_ahead_of_the_stream_is_refused_when_the_stream_was_made_anew(nc, tmp_path):
    writer = writer_for(nc, tmp_path / "audit")
    async with running(writer):
        await writer.wait_for_seq(await publish_session(nc.jetstream(), SUBJECTS, "s1", turns=2))
    async with EmbeddedNats(str(tmp_path / "other-broker")) as fresh:
        other = await connect_nats(fresh.url, name="audit-test")
        try:
            await ensure_stream(other.jetstream(), SUBJECTS)
            with pytest.raises(AuditError) as caught:
                await writer_for(other, tmp_path / "audit").run()
            assert caught.value.code == AUDIT_STREAM_RESET
        finally:
            await other.close()


@pytest.mark.slow
async def test_a_killed_and_restarted_worker_leaves_every_stream_message_in_the_log_exactly_once(nats_server, tmp_path):
    from actors.audit import records
    from actors.controller import Controller, ControllerConfig
    from protocol import Client

    from tests.workers.helpers import start_worker_process, stop

    ctl = Controller(ControllerConfig(nats_url=nats_server.url, heartbeat_ttl_s=2, reap_interval_s=0.2,
                                      lost_grace_s=60))
    await ctl.start()
    worker = await start_worker_process(nats_server.url, tmp_path / "w")
    try:
        async with await Client.connect(nats_server.url) as client:
            writer = writer_for(client.nats, tmp_path / "audit")
            async with running(writer):
                session = await client.create_session()
                for n in range(3):
                    assert (await session.cmd(f"echo {n}")).exit_code == 0
                worker.send_signal(signal.SIGKILL)
                await worker.wait()
                worker = await start_worker_process(nats_server.url, tmp_path / "w")
                assert (await session.cmd("echo after")).content == "after\n"
                await session.close()
                stored = [r.seq async for r in records(client.nats, SUBJECTS)]
                await writer.wait_for_seq(stored[-1])
            logged = lines_of(tmp_path / "audit")
            assert [r["seq"] for r in logged] == stored
            commands = [r["event"]["command"] for r in logged if r["kind"] == "cmd_run"]
            assert commands == ["echo 0", "echo 1", "echo 2", "echo after"]
            assert verify_log(str(tmp_path / "audit")).ok
    finally:
        await stop(worker)
        await ctl.aclose()
