"""In-sandbox plugins: the executor dispatches by kind through a registry; extra plugins start on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor._server import Claim, Executor, ExecutorConfig
from executor.plugins import PLUGINS, SandboxPlugin
from protocol import CmdOutput, CmdRun, Error, IPythonRun, UnknownName, codes, new_id


class CountingKernel(SandboxPlugin):
    """A stand-in plugin: answers ipython_run through the session's shell, counts its starts."""

    kinds = frozenset({"ipython_run"})
    starts = 0

    async def start(self) -> None:
        type(self).starts += 1

    async def handle(self, action, emit):  # type: ignore[no-untyped-def]
        out = await self.ctx.shells.run(CmdRun(id=new_id(), command=f"python3 -c {action.code!r}"), emit)
        return CmdOutput(id=new_id(), cause=action.id, session_id=self.ctx.session_id, content=out.content,
                         exit_code=out.exit_code)


PLUGINS.register("test-kernel", CountingKernel)


@pytest.fixture
async def unclaimed(tmp_path: Path):
    ex = Executor(ExecutorConfig(key="k", workdir=str(tmp_path / "work"), output_dir=str(tmp_path / "out")))
    await ex.start()
    yield ex
    await ex.aclose()


async def test_a_session_that_asks_for_a_plugin_gets_its_kinds_started_on_first_use(unclaimed):
    CountingKernel.starts = 0
    await unclaimed.claim(Claim(session_id="s", plugins=["test-kernel"]))
    assert CountingKernel.starts == 0  # declared, not started: an idle sandbox pays nothing for it
    first = await unclaimed.execute(IPythonRun(id=new_id(), code="print(6*7)"), lambda chunk: None)
    again = await unclaimed.execute(IPythonRun(id=new_id(), code="print(1)"), lambda chunk: None)
    assert (first.content, again.content) == ("42\n", "1\n") and CountingKernel.starts == 1


async def test_a_kind_no_plugin_serves_is_unsupported(unclaimed):
    await unclaimed.claim(Claim(session_id="s"))
    out = await unclaimed.execute(IPythonRun(id=new_id(), code="1"), lambda chunk: None)
    assert isinstance(out, Error) and out.code == codes.UNSUPPORTED and "ipython_run" in out.message


async def test_an_unknown_plugin_is_refused_at_claim_and_the_executor_stays_unclaimed(unclaimed):
    with pytest.raises(UnknownName):
        await unclaimed.claim(Claim(session_id="s", plugins=["no-such-plugin"]))
    assert unclaimed.session_id == ""
    await unclaimed.claim(Claim(session_id="s"))
    assert (await unclaimed.execute(CmdRun(id=new_id(), command="echo core"), lambda chunk: None)).content == "core\n"
