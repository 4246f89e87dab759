"""The local backend: executors forked from a zygote, which they outlive; the plugins it can serve."""

from pathlib import Path

import pytest

from executor.client import ExecutorClient
from executor.plugins import PLUGINS, SandboxPlugin
from protocol import CmdRun, SessionSpec, codes, new_id
from workers.backends import BackendError
from workers.backends.local import LocalBackend


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def _echo(handle) -> str:
    client = ExecutorClient(key=handle.key, socket_path=handle.socket_path)
    try:
        return [o async for o in client.execute(CmdRun(id=new_id(), command="echo forked"))][-1].content
    finally:
        await client.aclose()


async def test_executors_are_forked_from_the_zygote(tmp_path):
    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wz", socket_dir=str(tmp_path / "s"), warn=False)
    handle = await backend.create("s1", SessionSpec())
    try:
        assert _ppid(handle.pid) == backend._zygote_proc.pid
        assert await _echo(handle) == "forked\n"
    finally:
        await backend.destroy(handle)
        await backend.aclose()
    assert await backend.alive(handle) is not None


async def test_forked_sandboxes_outlive_the_zygote_and_are_listed_by_a_new_backend(tmp_path):
    first = LocalBackend(base_dir=str(tmp_path), worker_id="wz", socket_dir=str(tmp_path / "s"), warn=False)
    handle = await first.create("s2", SessionSpec())
    await first.aclose()  # stops the zygote
    second = LocalBackend(base_dir=str(tmp_path), worker_id="wz", socket_dir=str(tmp_path / "s"), warn=False)
    try:
        assert [h.sandbox_id for h in await second.list()] == [handle.sandbox_id]
        assert await _echo(handle) == "forked\n"
    finally:
        await second.destroy(handle)
        await second.aclose()


async def test_without_the_zygote_a_fresh_process_is_spawned(tmp_path):
    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wn", socket_dir=str(tmp_path / "s"), warn=False,
                           use_zygote=False)
    handle = await backend.create("s3", SessionSpec())
    try:
        assert backend._zygote_proc is None
        assert await _echo(handle) == "forked\n"
    finally:
        await backend.destroy(handle)
        await backend.aclose()


class _Missing(SandboxPlugin):
    """A plugin whose module no interpreter has."""

    modules = ("corral_test_no_such_module",)
    variant = "jupyter"

    async def handle(self, action, emit):
        raise AssertionError("never started")


@pytest.fixture
def missing_plugin():
    PLUGINS.register("corral-test-missing", _Missing)
    yield "corral-test-missing"
    PLUGINS._items.pop("corral-test-missing")


def test_a_plugin_whose_modules_the_worker_has_validates(tmp_path):
    pytest.importorskip("ipykernel")
    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wp", socket_dir=str(tmp_path / "s"), warn=False)
    backend.validate(SessionSpec(plugins=["jupyter"]))


def test_a_plugin_whose_module_is_missing_is_plugin_unavailable(tmp_path, missing_plugin):
    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wp", socket_dir=str(tmp_path / "s"), warn=False)
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(plugins=[missing_plugin]))
    assert info.value.code == codes.PLUGIN_UNAVAILABLE
    assert "corral_test_no_such_module" in str(info.value)


def test_an_unknown_plugin_is_invalid_spec(tmp_path):
    backend = LocalBackend(base_dir=str(tmp_path), worker_id="wp", socket_dir=str(tmp_path / "s"), warn=False)
    with pytest.raises(BackendError) as info:
        backend.validate(SessionSpec(plugins=["no-such-plugin"]))
    assert info.value.code == codes.INVALID_SPEC
