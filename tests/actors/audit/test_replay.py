"""records(): the stream read back for `corral audit tail`, the deployment's own sessions and every tenant's."""

from __future__ import annotations

from actors import ensure_stream
from actors.audit import records
from protocol import Subjects, connect_nats

from .events import publish_turn

SUBJECTS = Subjects()


async def test_records_include_tenants_sessions_with_their_tenant(nats_server):
    nc = await connect_nats(nats_server.url, name="audit-test")
    try:
        js = nc.jetstream()
        await ensure_stream(js, SUBJECTS)
        await publish_turn(js, SUBJECTS, "own", "echo own")
        await publish_turn(js, SUBJECTS.for_tenant("acme"), "s9", "echo tenant")
        seen = [(r.tenant, r.session_id, r.channel, r.kind) async for r in records(nc, SUBJECTS)]
        assert seen == [("", "own", "action", "cmd_run"), ("", "own", "obs", "cmd_output"),
                        ("acme", "s9", "action", "cmd_run"), ("acme", "s9", "obs", "cmd_output")]
        one = [r.seq async for r in records(nc, SUBJECTS, session_id="s9")]
        assert one == [3, 4]
    finally:
        await nc.close()
