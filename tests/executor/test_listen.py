"""``corral-executor --listen``: an executor on a machine of its own, over TCP (and TLS), serving
sessions one after another through claim and release."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import pytest

from executor.client import Claim, ExecutorBusy, ExecutorClient, KeyRefused
from protocol import CmdOutput, CmdRun, new_id
from tests.workers.backends.remote_executors import make_pki, start_executor, stop_executor, write_private


@pytest.fixture
async def remote(tmp_path):
    pki = make_pki(tmp_path / "pki")
    executor = await start_executor(tmp_path / "vm", key="k" * 32, pki=pki)
    context = ssl.create_default_context(cafile=pki.ca_file)
    port = int(executor.address.rsplit(":", 1)[1])
    client = ExecutorClient(key="k" * 32, host="127.0.0.1", port=port, ssl=context)
    yield executor, client, port, context
    await client.aclose()
    await stop_executor(executor)


async def cmd(client: ExecutorClient, command: str, action_id: str | None = None) -> CmdOutput:
    out = [o async for o in client.execute(CmdRun(id=action_id or new_id(), command=command))][-1]
    assert isinstance(out, CmdOutput), out
    return out


async def test_release_makes_the_executor_claimable_again_with_fresh_state(remote):
    executor, client, _, _ = remote
    await client.claim(Claim(session_id="s1", env={"A": "1"}))
    first = await cmd(client, "echo $A > f.txt; sleep 300 & echo $!", action_id="same-id")
    job = int(first.content.split()[-1])
    assert (await client.release("s1")).session_id == ""
    for _ in range(400):  # the session's job is hung up with its shell (20 s: slow under a loaded CI)
        if not _running(job):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the released session's job {job} still runs")
    health = await client.claim(Claim(session_id="s2"))
    assert health.session_id == "s2" and health.workdir == str(executor.workdir / "s2")
    again = await cmd(client, "ls -A; echo ${A:-unset}", action_id="same-id")  # not the stored answer of s1
    assert again.content == "unset\n"
    assert not (executor.workdir / "s1").exists()


async def test_release_kills_background_jobs_even_of_a_shell_that_ignores_its_hangup(remote):
    """A bash that does not exit on SIGHUP (here: it ignores it; on a loaded machine: too slow for
    the grace) never hangs up its jobs; each job is a process group of bash's session, killed too."""
    _, client, _, _ = remote
    await client.claim(Claim(session_id="s1"))
    out = await cmd(client, "trap '' HUP; sleep 300 & echo $!")
    job = int(out.content.split()[-1])
    await client.release("s1")
    for _ in range(100):
        if not _running(job):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the released session's job {job} survived its shell")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


async def test_release_of_another_session_is_refused_and_a_second_release_is_harmless(remote):
    _, client, _, _ = remote
    await client.claim(Claim(session_id="s1"))
    with pytest.raises(ExecutorBusy, match="serves session s1"):
        await client.release("not-s1")
    await client.release("s1")
    assert (await client.release("s1")).session_id == ""  # nothing to release: still 200


async def test_a_wrong_key_over_tls_is_refused(remote):
    _, _, port, context = remote
    client = ExecutorClient(key="wrong" * 8, host="127.0.0.1", port=port, ssl=context)
    with pytest.raises(KeyRefused):
        await client.health()
    await client.aclose()


async def _refused(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "executor", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode != 0 and not out
    return err.decode()


async def test_a_key_file_every_user_can_read_is_refused(tmp_path):
    key = write_private(tmp_path / "key", "k" * 32)
    os.chmod(key, 0o644)
    err = await _refused("--listen", "tcp://127.0.0.1:0", "--key-file", str(key))
    assert "readable by every user" in err and f"chmod 600 {key}" in err


async def test_a_short_key_and_half_a_tls_pair_are_refused(tmp_path):
    short = write_private(tmp_path / "short", "abc")
    assert "shorter than 16" in await _refused("--listen", "tcp://127.0.0.1:0", "--key-file", str(short))
    key = write_private(tmp_path / "key", "k" * 32)
    assert "go together" in await _refused("--listen", "tcp://127.0.0.1:0", "--key-file", str(key), "--tls-cert", "c.pem")
    assert "tcp://HOST:PORT" in await _refused("--listen", "127.0.0.1:80", "--key-file", str(key))
