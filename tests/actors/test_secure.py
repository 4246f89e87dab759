"""The generated broker configuration, attacked on a real nats-server: what each role may reach."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import nats.errors
import nats.js.errors
import pytest

from actors import sessions_bucket
from actors.secure import SecureError, SecureStore
from protocol import Subjects, codes, connect_nats

from .secure_broker import barrier, start_secure_broker, until


@pytest.fixture
async def broker(tmp_path):
    found, close = await start_secure_broker(tmp_path)
    try:
        yield found
    finally:
        await close()


async def _refused_then_marker(broker, errors, subject: str, got: list) -> None:
    """After a forbidden publish: the broker said so, and a marker the admin publishes on the same
    subject afterwards is the only thing its collector ever got."""
    await until(lambda: any("permissions violation" in e.lower() for e in errors))
    await broker.admin.publish(subject, b"marker")
    await until(lambda: got)
    assert [m.data for m in got] == [b"marker"]


async def test_tenant_a_publishing_to_tenant_b_s_action_subject_is_refused_and_delivers_nothing(broker):
    subject = "corral.t.b.session.sb1.action.cmd_run"
    to_b = await broker.collect(subject)
    a, errors = await broker.login("client", "a")
    await a.publish(subject, b"rm -rf /")
    await a.flush()
    await _refused_then_marker(broker, errors, subject, to_b)
    info = await broker.admin.jetstream().stream_info("CORRAL")
    assert info.state.messages == 1  # the marker only: the stream never saw A's action


async def test_tenant_a_cannot_subscribe_to_b_the_deployment_the_workers_kv_or_the_jetstream_api(broker):
    a, errors = await broker.login("client", "a")
    subjects = ["corral.t.b.session.*.obs.>", "corral.t.b.session.sb1.status", "corral.session.>", "corral.worker.>",
                "$KV.>", "$JS.API.>", "corral.t.b.inbox.>", ">"]
    got: list = []

    async def cb(msg) -> None:
        got.append(msg.subject)

    for subject in subjects:
        await a.subscribe(subject, cb=cb)
    await a.flush()
    await until(lambda: len(errors) == len(subjects))
    assert all("permissions violation for subscription" in e.lower() for e in errors)
    for subject in ["corral.t.b.session.sb1.obs.cmd_output", "corral.t.b.session.sb1.status", "corral.session.s1.obs.x",
                    "corral.worker.w1.heartbeat", "$KV.corral_sessions.s1"]:
        await broker.admin.publish(subject, b"secret")
    # A barrier: what A may read arrives; nothing of the above came before it.
    own = "corral.t.a.session.sa1.obs.cmd_output"
    mine: list = []

    async def own_cb(msg) -> None:
        mine.append(msg.data)

    await a.subscribe(own, cb=own_cb)
    await barrier(a, "corral.t.a.lookup.barrier")
    await broker.admin.publish(own, b"yours")
    await until(lambda: mine)
    assert got == [] and mine == [b"yours"]


async def test_a_reply_subject_cannot_make_jetstream_write_into_the_registry_or_another_tenant(broker):
    """A single account would let a tenant name any subject as the reply of its own (allowed)
    publish: the stream then sends its PubAck there, into the KV registry or another tenant's
    session. In its own account, the reply can only name the tenant's own subjects."""
    kv = await sessions_bucket(broker.admin.jetstream(), Subjects())
    await kv.put("s9", b"the real record")
    to_b = await broker.collect("corral.t.b.>")
    a, _errors = await broker.login("client", "a")
    for reply in ["$KV.corral_sessions.s9", "corral.t.b.session.sb1.action.cmd_run", "corral.ctl.close"]:
        await a.publish("corral.t.a.session.sa1.action.cmd_run", b"x", reply=reply)
    ack = await a.jetstream().publish("corral.t.a.session.sa1.action.cmd_run", b"y")  # the last of A's
    assert ack.stream == "CORRAL"
    assert (await kv.get("s9")).value == b"the real record"
    assert to_b == []
    stored = await broker.admin.jetstream().stream_info("CORRAL")
    assert stored.state.messages == 4  # A's four actions, nothing else


async def test_a_plain_client_cannot_publish_confirm_and_an_approver_can(broker):
    subject = "corral.t.a.session.sa1.action.confirm"
    confirms = await broker.collect(subject)
    client, errors = await broker.login("client", "a")
    await client.publish(subject, b"client's")
    await client.publish(subject + ".x", b"client's, one token more")
    await client.flush()
    await until(lambda: len(errors) == 2)
    approver, _ = await broker.login("approver", "a")
    await approver.publish(subject, b"approver's")
    await until(lambda: confirms)
    assert [m.data for m in confirms] == [b"approver's"]


async def test_a_tenant_cannot_read_the_kv_registry(broker):
    kv = await sessions_bucket(broker.admin.jetstream(), Subjects())
    await kv.put("s9", b"record")
    a, errors = await broker.login("client", "a")
    js = a.jetstream(timeout=1)
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await (await js.key_value("corral_sessions")).get("s9")
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await js.stream_info("CORRAL")


async def test_the_observer_reads_session_subjects_but_publishes_nothing_on_them(broker):
    observer, errors = await broker.login("observer")
    seen: list = []

    async def cb(msg) -> None:
        seen.append(msg.subject)

    await observer.subscribe("corral.t.*.session.>", cb=cb)
    await observer.subscribe("corral.session.>", cb=cb)
    await observer.jetstream().stream_info("CORRAL")  # a round trip: both subscriptions are in
    await broker.admin.publish("corral.t.b.session.sb1.obs.cmd_output", b"o")
    await broker.admin.publish("corral.session.s1.status", b"s")
    await until(lambda: len(seen) == 2)
    forged = await broker.collect("corral.>")
    for subject in ["corral.session.s1.action.cmd_run", "corral.t.b.session.sb1.obs.cmd_output", "corral.ctl.close",
                    "corral.worker.w1.close"]:
        await observer.publish(subject, b"forged")
    await observer.flush()
    await until(lambda: len(errors) == 4)
    assert forged == []
    sub = await observer.jetstream().pull_subscribe("corral.session.>", durable="audit_writer", stream="CORRAL")
    [stored] = await sub.fetch(1, timeout=5)  # its durable consumer reads the stream, and acks
    assert stored.subject == "corral.session.s1.status"
    await stored.ack_sync()


async def test_a_tenant_added_to_a_running_broker_is_served_without_a_restart(broker):
    already, _ = await broker.login("client", "a")
    c = broker.store.add_tenant("c")
    assert await broker.store.reload(probe=c)  # returns once c logs in and reaches the core account
    nc, _ = await broker.login("client", "c")
    ack = await nc.jetstream().publish("corral.t.c.session.sc1.action.cmd_run", b"x")
    assert ack.stream == "CORRAL"
    assert already.is_connected  # the reload dropped no one
    assert (await already.jetstream().publish("corral.t.a.session.sa1.action.cmd_run", b"x")).stream == "CORRAL"


async def test_a_removed_tenant_is_disconnected_and_cannot_log_in(broker):
    b, _ = await broker.login("client", "b")
    assert broker.store.remove_tenant("b") == ["b.client"]
    assert await broker.store.reload()
    await until(lambda: not b.is_connected, 10)
    with pytest.raises(Exception):
        await connect_nats(broker.server.url, name="gone", first_attempts=0, allow_reconnect=False,
                           user="b.client", password="anything")


def test_only_hashes_in_the_config_and_plaintext_only_in_0600_creds_files(tmp_path):
    store = SecureStore(tmp_path)
    store.init(port=4999)
    creds = store.add_tenant("acme", "approver")
    config, users = store.config_file.read_text(), store.users_file.read_text()
    assert creds.password not in config and creds.password not in users
    assert "$2b$" in config
    for path in [store.config_file, store.users_file, *store.creds_dir.iterdir()]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    on_disk = json.loads(open(creds.creds_file).read())
    assert on_disk["password"] == creds.password and on_disk["subject_prefix"] == "corral.t.acme"
    assert on_disk["inbox_prefix"] == "corral.t.acme.inbox" and "ca_file" not in on_disk


@pytest.mark.parametrize("name", ["Acme", "a.b", "a*", "", "-x", "x" * 33])
def test_a_bad_tenant_name_is_invalid_argument(tmp_path, name):
    store = SecureStore(tmp_path)
    store.init()
    with pytest.raises(SecureError) as info:
        store.add_tenant(name)
    assert info.value.code == codes.INVALID_ARGUMENT


def test_a_tenant_cannot_be_given_an_internal_role(tmp_path):
    store = SecureStore(tmp_path)
    store.init()
    with pytest.raises(SecureError) as info:
        store.add_tenant("acme", "admin")  # type: ignore[arg-type]
    assert info.value.code == codes.INVALID_ARGUMENT


async def test_tenants_added_concurrently_all_land(tmp_path):
    store = SecureStore(tmp_path)
    store.init()
    await asyncio.gather(*(asyncio.to_thread(store.add_tenant, f"t{n}") for n in range(8)))
    assert sorted(store.tenants()) == [f"t{n}" for n in range(8)]
