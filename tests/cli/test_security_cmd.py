"""`corral security check` and `corral session confirm`, run as real processes."""

from __future__ import annotations

import asyncio

import pytest

from protocol import CmdOutput, CmdRun, ConfirmationRequired, Rejected, new_id

from .test_cli import corral


@pytest.mark.parametrize(("text", "code", "says"), [("echo hi", 0, "allow"), ("rm -rf /", 1, "confirm")])
async def test_check_says_the_decision_and_exits_with_it(text: str, code: int, says: str) -> None:
    status, out, _ = await corral("nats://unused", "security", "check", text)
    assert status == code and f"decision: {says}" in out


async def test_check_takes_the_deployments_config(tmp_path) -> None:
    (tmp_path / "s.toml").write_text('[policy]\nhigh = "block"\n')
    status, out, _ = await corral("nats://unused", "security", "check", "--security-config", str(tmp_path / "s.toml"),
                                  "--kind", "file_read", "~/.ssh/id_rsa")
    assert status == 2 and "credential" in out


@pytest.mark.parametrize("reject", [False, True])
async def test_session_confirm_releases_or_rejects_a_held_action(client, deployment, reject: bool) -> None:
    async with await client.create_session() as session:
        stream = session.stream(CmdRun(id=new_id(), command="echo ok || sudo -n true"))
        required = await asyncio.wait_for(stream.__anext__(), 10)
        assert isinstance(required, ConfirmationRequired)
        status, out, err = await corral(deployment.url, "session", "confirm", session.session_id, required.action_id,
                                        "--by", "carol", *(["--reject"] if reject else []))
        assert status == 0, err
        assert out == f"{required.action_id} {'rejected' if reject else 'approved'}\n"
        final = [obs async for obs in stream][-1]
        if reject:
            assert isinstance(final, Rejected) and final.approver == "carol"
        else:
            assert isinstance(final, CmdOutput) and final.content == "ok\n"


async def test_session_confirm_of_nothing_held_fails_with_not_held(client, deployment) -> None:
    async with await client.create_session() as session:
        status, _, err = await corral(deployment.url, "session", "confirm", session.session_id, "nothing")
        assert status != 0 and "not_held" in err
