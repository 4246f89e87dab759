"""Every action gets an answer, whatever goes wrong inside the executor, and the shell lives on.

Real bash, a real Executor in this process: the failures are provoked, not simulated — an id that
is no file name, a command that removes the executor's own directories, a stream that breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor._server import RESULTS_MAX_BYTES, Executor, ExecutorConfig, _Results
from executor._shell import ShellManager
from protocol import CmdChunk, CmdOutput, CmdRun, Error, FileContent, FileRead, codes, new_id

ANSWER_WITHIN_S = 20  # a lost answer would otherwise hang the test forever
BIG = "seq 1 30000"  # 168 894 characters: past the 30 000 cap, so the log is written
FULL = "".join(f"{i}\n" for i in range(1, 30001))


@pytest.fixture
async def shells(tmp_path: Path) -> AsyncIterator[ShellManager]:
    (tmp_path / "work").mkdir()
    manager = ShellManager(session_id="s", workdir=str(tmp_path / "work"), env={}, output_dir=str(tmp_path / "out"))
    await manager.start()
    yield manager
    await manager.aclose()


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[Executor]:
    config = ExecutorConfig(key="k", workdir=str(tmp_path / "work"), output_dir=str(tmp_path / "out"), session_id="s")
    ex = Executor(config)
    await ex.start()
    yield ex
    await ex.aclose()


async def run(shells: ShellManager, command: str, action_id: str | None = None, **kw: object) -> CmdOutput:
    action = CmdRun(id=action_id or new_id(), command=command, **kw)  # type: ignore[arg-type]
    return await asyncio.wait_for(shells.run(action), ANSWER_WITHIN_S)


async def shell_still_works(shells: ShellManager) -> None:
    result = await run(shells, "echo ok", timeout_s=10)
    assert (result.status, result.content) == ("completed", "ok\n")


# ------------------------------------------------------------------ the output log


@pytest.mark.parametrize("action_id", ["../../escaped", "a/b/c", "x" * 300, "..", ".hidden", "é/\x00/ü"])
async def test_an_id_that_is_no_file_name_still_gets_its_full_output_log(shells, tmp_path, action_id):
    result = await run(shells, BIG, action_id)
    assert (result.status, result.truncated, result.cause) == ("completed", True, action_id)
    log = Path(result.full_output_path or "")
    assert log.parent == tmp_path / "out" and not log.name.startswith(".") and len(log.name) < 100
    assert log.read_text() == FULL
    await shell_still_works(shells)


async def test_distinct_ids_get_distinct_logs(shells):
    first = await run(shells, BIG, "a/b")
    second = await run(shells, BIG, "a_b")
    assert first.full_output_path != second.full_output_path


async def test_a_command_that_removes_the_output_dir_still_gets_its_answer(shells, tmp_path):
    out = tmp_path / "out"
    # Wait (on the fact: the log exists) until the executor has spilled to its log, then pull the
    # directory from under it so the log cannot be renamed when the command ends.
    command = f"{BIG}; until ls {out}/*.log >/dev/null 2>&1; do :; done; rm -rf {out}; touch {out}"
    result = await run(shells, command)
    assert (result.status, result.exit_code, result.truncated, result.full_output_path) == ("completed", 0, True, None)
    assert "the full output could not be kept" in result.content
    assert result.content.startswith(FULL[:10_000]) and result.content.endswith(FULL[-20_000:])
    await shell_still_works(shells)


async def test_an_output_dir_that_cannot_be_made_costs_only_the_log(shells, tmp_path):
    (tmp_path / "out").write_text("a file where the output directory should be")
    result = await run(shells, BIG)
    assert (result.status, result.truncated, result.full_output_path) == ("completed", True, None)
    assert "the full output could not be kept" in result.content and result.content.endswith(FULL[-20_000:])
    await shell_still_works(shells)


async def test_a_long_command_runs_after_its_scratch_dir_was_removed(shells):
    scratch = shells.scratch_dir()
    assert (await run(shells, f"rm -rf {scratch}")).exit_code == 0
    long_command = "echo " + "x" * 3000 + " >/dev/null; echo long"
    result = await run(shells, long_command)
    assert (result.status, result.content) == ("completed", "long\n")
    await shell_still_works(shells)


# ------------------------------------------------------------------ the stream


async def test_a_failing_stream_answers_internal_and_the_command_keeps_running(executor):
    def broken_stream(chunk: CmdChunk) -> None:
        raise ConnectionResetError("the worker went away")

    command = "echo start; read -r line; echo got $line"
    answer = await asyncio.wait_for(executor.execute(CmdRun(id="s1", command=command), broken_stream), ANSWER_WITHIN_S)
    assert isinstance(answer, Error) and (answer.code, answer.cause) == (codes.INTERNAL, "s1")
    assert "could not stream" in answer.message and "keeps running" in answer.message
    assert executor.result("s1") == answer  # stored: a repeated id gets the same answer
    fed = await executor.execute(CmdRun(id="s2", command="more", is_input=True, soft_timeout_s=5), lambda c: None)
    assert isinstance(fed, CmdOutput) and fed.status == "completed" and "got more" in fed.content
    ok = await executor.execute(CmdRun(id="s3", command="echo ok"), lambda c: None)
    assert isinstance(ok, CmdOutput) and ok.content == "ok\n"


# ------------------------------------------------------------------ the answers table


async def test_the_answers_table_stays_under_its_byte_cap(executor, tmp_path):
    big = tmp_path / "work" / "big.txt"
    big.write_text(("y" * 99 + "\n") * 8_500)  # 850 000 bytes
    for n in range(300):
        answer = await executor.execute(FileRead(id=f"r{n}", path=str(big)), lambda c: None)
        assert isinstance(answer, FileContent)
        stats = executor.statistics()
        assert stats["results_bytes"] <= RESULTS_MAX_BYTES
    assert 0 < stats["results"] < 300
    assert executor.result("r299") is not None and executor.result("r0") is None


def test_the_answers_table_keeps_the_newest_answer_even_over_the_cap():
    table = _Results(max_count=10, max_bytes=100)
    obs = Error(id="o", cause="a", session_id="s", code="x", message="m")
    table.add("a", obs, 60)
    table.add("b", obs, 500)
    assert (len(table), table.nbytes, table.get("b"), table.get("a")) == (1, 500, obs, None)


def test_the_answers_table_evicts_the_oldest_past_its_count():
    table = _Results(max_count=2, max_bytes=10**9)
    obs = Error(id="o", cause="a", session_id="s", code="x", message="m")
    for action_id in "abc":
        table.add(action_id, obs, 1)
    assert [table.get(i) is not None for i in "abc"] == [False, True, True] and table.nbytes == 2
