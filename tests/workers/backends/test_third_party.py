"""A backend from another package: found by the ``corral.backends`` entry point, selected by name,
and checked by the same contract suite, run the way its author would run it (their own pytest)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[3]

PACKAGE = '''
"""A third party's backend: local processes under a directory of its own, with its own config."""
import msgspec
from workers.backends import BackendPlugin
from workers.backends.local import LocalBackend


class ScratchConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    subdir: str = "scratch"


class ScratchBackend(LocalBackend):
    name = "scratch"


def _create(env, config):
    return ScratchBackend(base_dir=f"{env.base_dir}/{config.subdir}", worker_id=env.worker_id, warn=False)


PLUGIN = BackendPlugin(ScratchConfig, _create)
'''

THEIR_TESTS = '''
import os, signal
import pytest
from protocol import new_id
from workers.backends import BACKENDS, ExternalBackendConfig, make_backend
from workers.backends.contract import BackendContract


def test_found_by_its_entry_point_beside_ours():
    assert {"local", "bubblewrap", "docker", "scratch"} <= set(BACKENDS.names())


class TestScratch(BackendContract):
    @pytest.fixture
    async def make(self, tmp_path):
        made, worker_id = [], "tp-" + new_id()[:8]
        config = ExternalBackendConfig(backend="scratch", options={"subdir": "mine"})

        def build():
            made.append(make_backend(config, base_dir=str(tmp_path), worker_id=worker_id))
            assert type(made[-1]).__name__ == "ScratchBackend"
            return made[-1]

        yield build
        for handle in await build().inventory():
            await made[-1].destroy(handle)

    async def kill(self, backend, handle):
        os.killpg(handle.pid, signal.SIGKILL)
'''


async def test_a_third_party_backend_passes_the_contract_suite_by_entry_point(tmp_path):
    site = tmp_path / "site"
    info = site / "corral_scratch-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-scratch\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[corral.backends]\nscratch = corral_scratch:PLUGIN\n")
    (site / "corral_scratch.py").write_text(PACKAGE)
    tests = tmp_path / "their_tests"
    tests.mkdir()
    (tests / "test_scratch.py").write_text(THEIR_TESTS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(tests),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *sys.path])})
    out, _ = await asyncio.wait_for(proc.communicate(), 110)
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "9 passed" in text, text[-1500:]


def test_our_backends_are_declared_by_the_same_entry_point_group():
    from importlib.metadata import entry_points

    from workers.backends import BACKENDS

    declared = {point.name: point.value for point in entry_points(group="corral.backends")}
    assert {"local", "bubblewrap", "docker", "kubernetes", "remote"} <= set(declared)
    assert all(value.startswith("workers.backends.") for name, value in declared.items() if name in BACKENDS.names()
               and name in ("local", "bubblewrap", "docker"))
    assert BACKENDS.get("docker").config.__name__ == "DockerConfig"
