"""The backend contract as a pytest suite anyone can run against their backend.

A backend is done when a subclass of ``BackendContract`` passes. Ours run it in
``tests/workers/backends/test_contract.py``; a third party's package does the same::

    from workers.backends.contract import BackendContract

    class TestFirecracker(BackendContract):
        @pytest.fixture
        def make(self, tmp_path):               # backends sharing a base dir and worker id,
            ...                                 # as a worker and its restart would; clean up after
        async def kill(self, backend, handle):  # end the sandbox abruptly, from outside
            ...

It covers create (prestart, then claim), claim binding a session, execution through the
backend's channel, adoption by a fresh instance, destroy, death reported and kept for the sweeper,
a fresh instance sweeping what another left, pause where supported, and specs refused with
``invalid_spec``. Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from protocol import CmdOutput, CmdRun, SessionSpec, new_id

from executor.client import ExecutorClient

from ._base import Backend, BackendError, SandboxHandle

MakeBackend = Callable[[], Backend]


async def run(backend: Backend, handle: SandboxHandle, command: str, **fields: object) -> CmdOutput:
    """One command through the backend's channel to the sandbox's executor; its final output."""
    return await run_on(backend.client(handle), command, **fields)


async def run_on(client: ExecutorClient, command: str, **fields: object) -> CmdOutput:
    """One command through ``client`` (which it closes); its final output."""
    try:
        observations = [o async for o in client.execute(CmdRun(id=new_id(), command=command, **fields))]
    finally:
        await client.aclose()
    assert isinstance(observations[-1], CmdOutput), observations[-1]
    return observations[-1]


async def wait_dead(backend: Backend, handle: SandboxHandle, timeout_s: float = 30.0) -> str:
    """Why the sandbox is not alive, once ``alive`` says so (it may take the engine a moment)."""
    async with asyncio.timeout(timeout_s):
        while (reason := await backend.alive(handle)) is None:
            await asyncio.sleep(0.05)
    return reason


class BackendContract:
    """Subclass it and provide the ``make`` fixture and ``kill``; every test here then runs."""

    spec = SessionSpec()
    """The spec the contract's sandboxes are made from (e.g. with the image your backend needs)."""

    @pytest.fixture
    def make(self) -> MakeBackend:
        raise NotImplementedError("a BackendContract subclass provides the `make` fixture")

    async def kill(self, backend: Backend, handle: SandboxHandle) -> None:
        """End the sandbox abruptly, from outside it (SIGKILL, a forced container or pod removal)."""
        raise NotImplementedError

    @pytest.fixture
    def backend(self, make: MakeBackend) -> Backend:
        return make()

    def with_spec(self, **fields: object) -> SessionSpec:
        import msgspec

        return msgspec.structs.replace(self.spec, **fields)

    async def test_a_prestarted_sandbox_answers_unclaimed(self, backend):
        handle = await backend.prestart(self.spec)
        health = await backend.client(handle).health()
        assert health.ok and health.session_id == ""
        assert await backend.alive(handle) is None

    async def test_a_claim_binds_the_session_its_env_and_workdir(self, backend):
        handle = await backend.create("s-contract", self.with_spec(env={"WHO": "contract"}))
        assert handle.session_id == "s-contract"
        out = await run(backend, handle, "echo $WHO; pwd")
        assert out.content.split()[0] == "contract" and out.exit_code == 0
        assert (await backend.client(handle).health()).session_id == "s-contract"

    async def test_a_restarted_worker_finds_and_drives_its_sandboxes(self, backend, make):
        handle = await backend.create("s-adopt", self.spec)
        fresh = make()
        found = {h.sandbox_id: h for h in await fresh.list()}
        assert handle.sandbox_id in found and found[handle.sandbox_id].session_id == "s-adopt"
        assert (await run(fresh, found[handle.sandbox_id], "echo adopted")).content == "adopted\n"

    async def test_destroy_removes_the_sandbox_and_every_trace(self, backend):
        handle = await backend.create("s-gone", self.spec)
        await backend.destroy(handle)
        assert await backend.alive(handle) is not None
        assert handle.sandbox_id not in {h.sandbox_id for h in await backend.inventory()}
        await backend.destroy(handle)  # idempotent

    async def test_a_dead_sandbox_says_why_and_stays_in_the_inventory_for_the_sweeper(self, backend):
        handle = await backend.create("s-dead", self.spec)
        await self.kill(backend, handle)
        assert await wait_dead(backend, handle)
        assert handle.sandbox_id not in {h.sandbox_id for h in await backend.list()}
        assert handle.sandbox_id in {h.sandbox_id for h in await backend.inventory()}

    async def test_a_fresh_instance_sweeps_what_another_left(self, backend, make):
        live = await backend.create("s-left", self.spec)
        dead = await backend.create("s-left-dead", self.spec)
        await self.kill(backend, dead)
        await wait_dead(backend, dead)
        sweeper = make()
        left = {h.sandbox_id: h for h in await sweeper.inventory()}
        assert {live.sandbox_id, dead.sandbox_id} <= set(left)
        for handle in left.values():
            await sweeper.destroy(handle)
        assert not {live.sandbox_id, dead.sandbox_id} & {h.sandbox_id for h in await sweeper.inventory()}

    async def test_pause_freezes_every_process_until_resume_where_supported(self, backend):
        handle = await backend.create("s-pause", self.spec)
        try:
            await backend.pause(handle)
        except BackendError as exc:
            assert exc.code == "unsupported", exc  # the contract: say so, with the stable code
            return
        frozen = asyncio.create_task(run(backend, handle, "echo thawed"))
        done, _ = await asyncio.wait({frozen}, timeout=1.0)
        assert not done, "an action finished inside a paused sandbox"
        await backend.resume(handle)
        assert (await asyncio.wait_for(frozen, 20)).content == "thawed\n"

    async def test_a_spec_the_backend_cannot_serve_is_invalid_spec(self, backend):
        refused = [self.with_spec(isolation="kata-please")]
        if not backend.can_keep:
            refused.append(self.with_spec(keep=True))
        if not backend.can_persist:
            refused.append(self.with_spec(persistent=True))
        for spec in refused:
            with pytest.raises(BackendError) as info:
                backend.validate(spec)
            assert info.value.code == "invalid_spec"
