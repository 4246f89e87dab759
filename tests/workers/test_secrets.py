"""Secrets end to end: the value reaches the sandbox's environment, and nothing corral publishes,
stores or logs carries it — the stream (every message, raw), the audit file, the registry, the logs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import secrets as random
import stat
import string
from pathlib import Path

import msgspec
import pytest
import structlog

from actors import sessions_bucket, stream_name
from actors.controller import Controller, ControllerConfig
from actors.secrets import live_secrets
from cli._common import configure_logging
from cli.up import Deployment, UpConfig
from protocol import (
    Client,
    CmdChunk,
    CmdOutput,
    CmdRun,
    Error,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    codes,
    decode_observation,
    new_id,
)
from workers.worker import Worker, WorkerConfig

MASK = "[secret:API_TOKEN]"


def _token() -> str:
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(24))


@pytest.fixture
def logs():
    """The process's logs as `corral` configures them (JSON, debug, on what is stderr then), read back."""
    saved, out = structlog.get_config(), io.StringIO()
    with contextlib.redirect_stderr(out):
        configure_logging("debug", True)
    yield out.getvalue
    structlog.configure(**saved)


@pytest.fixture
async def audited(nats_server, tmp_path, logs):
    """A local deployment with its audit writer, like `corral up`."""
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="local", audit=True)
    async with Deployment(config) as dep:
        async with await Client.connect(dep.url) as client:
            yield dep, client


async def _stream_messages(client: Client) -> list[bytes]:
    """Every message of the stream, raw: subject, headers and payload bytes, actions and answers alike."""
    js = client.nats.jetstream()
    stream = stream_name(client.subjects)
    last = (await js.stream_info(stream)).state.last_seq
    found = []
    for seq in range(1, last + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except Exception:  # a chunk expired or a deleted message: nothing to leak
            continue
        found.append(msg.subject.encode() + json.dumps(msg.headers or {}).encode() + (msg.data or b""))
    return found


async def _audit_caught_up(audit_dir: Path, last_seq: int) -> str:
    """The audit files' text once they hold the stream's last record (the writer trails by a batch)."""
    async def written() -> str:
        while True:
            text = "".join(p.read_text() for p in sorted(audit_dir.rglob("*")) if p.is_file())
            seqs = [json.loads(line).get("seq", 0) for line in text.splitlines() if line.strip()]
            if seqs and max(seqs) >= last_seq:
                return text
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(written(), 20)


async def _json_action(client: Client, session_id: str, action: dict) -> dict:
    """Publish an action as JSON through JetStream, the way a non-Python client does; its JSON answer."""
    nc = client.nats
    sub = await nc.subscribe(client.subjects.observations(session_id))
    try:
        await nc.jetstream().publish(client.subjects.action(session_id, action["kind"]), json.dumps(action).encode(),
                                     headers={"Content-Type": "application/json", "Nats-Msg-Id": action["id"]})
        while True:
            msg = await sub.next_msg(timeout=20)
            answer = json.loads(msg.data)
            if answer.get("cause") == action["id"] and answer["kind"] != "cmd_chunk":
                return answer
    finally:
        await sub.unsubscribe()


async def test_a_secret_echoed_in_every_way_is_masked_in_the_stream_the_audit_file_and_the_logs(audited, tmp_path, logs):
    dep, client = audited
    value = _token()
    js = client.nats.jetstream()
    async with await client.create_session(secrets={"API_TOKEN": value}) as s:
        echoed = await s.run(CmdRun(id=new_id(), command="echo $API_TOKEN"))
        assert isinstance(echoed, CmdOutput) and echoed.content == MASK + "\n"

        env = await s.run(CmdRun(id=new_id(), command="printenv"))
        assert f"API_TOKEN={MASK}" in env.content

        chunks, final = [], None
        split = CmdRun(id=new_id(), command='printf %s "${API_TOKEN:0:10}"; sleep 0.3; printf %s "${API_TOKEN:10}"')
        async for obs in s.stream(split):
            if isinstance(obs, CmdChunk):
                chunks.append(obs)
            else:
                final = obs
        assert "".join(c.data for c in chunks) == MASK  # two halves, 0.3 s apart: still one whole mask
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert isinstance(final, CmdOutput) and final.content == MASK

        assert (await s.cmd('printf %s "$API_TOKEN" > tok.txt')).exit_code == 0
        read = await s.run(FileRead(id=new_id(), path="tok.txt"))
        assert isinstance(read, FileContent) and read.content == MASK
        viewed = await s.run(FileEdit(id=new_id(), command="view", path=f"{echoed.working_dir}/tok.txt"))
        assert isinstance(viewed, FileEdited) and MASK in viewed.content

        assert (await s.cmd('mkdir -p box && touch "box/$API_TOKEN"')).exit_code == 0
        error = await s.run(FileRead(id=new_id(), path="box"))  # "box is a directory... It contains: <value>"
        assert isinstance(error, Error) and error.code == codes.IS_A_DIRECTORY and MASK in error.message

        as_json = await _json_action(client, s.session_id, {"kind": "cmd_run", "id": new_id(), "command": "echo $API_TOKEN"})
        assert as_json["kind"] == "cmd_output" and as_json["content"] == MASK + "\n"

        again = await s.run(CmdRun(id=echoed.cause, command="echo $API_TOKEN"))  # a repeated id: the stored answer
        assert again == echoed
        looked_up = await client.nats.request(client.subjects.lookup(s.session_id), echoed.cause.encode(), timeout=10)
        assert decode_observation(looked_up.data) == echoed

        kv = await sessions_bucket(js, client.subjects)
        registry = (await kv.get(s.session_id)).value
        assert value.encode() not in registry and b"API_TOKEN" not in registry
        info = await client.get_session(s.session_id)
        assert value not in msgspec.json.encode(info).decode()
        assert len(live_secrets) == 1
    assert len(live_secrets) == 0  # closed: this process no longer masks (or holds) the value

    messages = await _stream_messages(client)
    assert messages and not [m for m in messages if value.encode() in m]
    assert any(MASK.encode() in m for m in messages)
    last = (await js.stream_info(stream_name(client.subjects))).state.last_seq
    audit = await _audit_caught_up(tmp_path / "corral" / "audit", last)
    assert value not in audit and MASK in audit
    captured = logs()
    assert '"action_answered"' in captured  # the logs were captured, at debug level
    assert value not in captured


async def test_the_command_sees_the_real_value(client):
    value = _token()
    async with await client.create_session(secrets={"API_TOKEN": value}) as s:
        digest = hashlib.sha256(value.encode()).hexdigest()  # the value itself must not be in the action
        out = await s.cmd(f'test "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = {digest} && echo same')
        assert out.content == "same\n"
        side = await s.cmd(f'test "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = {digest} && echo same',
                           shell="later")  # a shell started after the claim gets the session's env too
        assert side.content == "same\n"


async def test_a_log_line_that_carries_a_live_secret_is_masked(client, logs):
    value = _token()
    async with await client.create_session(secrets={"API_TOKEN": value}):
        structlog.get_logger().warning("leaky_event", detail=f"token {value}", nested={"v": [value]},
                                       obj=ValueError(value))
    structlog.get_logger().warning("after_close", detail=value)  # the session is gone: no longer masked
    lines = {event["event"]: event for event in map(json.loads, logs().splitlines()) if event.get("event") in ("leaky_event", "after_close")}
    leaky = lines["leaky_event"]
    assert leaky["detail"] == f"token {MASK}" and leaky["nested"] == {"v": [MASK]} and value not in leaky["obj"]
    assert lines["after_close"]["detail"] == value


async def test_a_restarted_worker_still_masks_and_the_executors_cached_answers_are_masked(nats_server, tmp_path):
    """After a restart the registry has no secrets: the worker reads them from the sandbox's handle
    file; a lookup of an answer from before the restart comes from the executor's cache, unmasked there."""
    value = _token()
    ctl = Controller(ControllerConfig(nats_url=nats_server.url))
    await ctl.start()
    config = WorkerConfig(nats_url=nats_server.url, worker_id="wk-secrets", backend="local",
                          base_dir=str(tmp_path / "w"), warm_pool=0)
    worker = Worker(config)
    await worker.start()
    try:
        async with await Client.connect(nats_server.url) as client:
            s = await client.create_session(secrets={"API_TOKEN": value})
            before = await s.run(CmdRun(id=new_id(), command="echo $API_TOKEN"))
            assert before.content == MASK + "\n"
            await s.cmd("true")  # acked after `before`'s answer: the restarted worker does not re-read that answer
            (handle_file,) = (tmp_path / "w").rglob("sandbox.json")
            assert stat.S_IMODE(handle_file.stat().st_mode) == 0o600 and value in handle_file.read_text()

            recovered = asyncio.get_running_loop().create_future()

            async def on_status(msg):
                if b"recovered" in msg.data and not recovered.done():
                    recovered.set_result(None)

            await client.nats.subscribe(client.subjects.status(s.session_id), cb=on_status)
            await worker.aclose(destroy_sandboxes=False)  # the sandbox lives on
            worker = Worker(config)
            await worker.start()
            await asyncio.wait_for(recovered, 20)

            reply = await client.nats.request(client.subjects.lookup(s.session_id), before.cause.encode(), timeout=10)
            assert value.encode() not in reply.data
            assert decode_observation(reply.data).content == MASK + "\n"
            after = await s.run(CmdRun(id=new_id(), command="echo $API_TOKEN"))
            assert after.content == MASK + "\n"
            await s.close()
    finally:
        await worker.aclose()
        await ctl.aclose()
