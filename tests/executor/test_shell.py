"""Persistent PTY shells against real bash: completion, input, timeouts, streaming, caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import os
from pathlib import Path

import pytest

from executor._output import log_name
from executor._shell import ShellManager
from protocol import CmdChunk, CmdOutput, CmdRun, new_id


@pytest.fixture
async def shells(tmp_path: Path) -> AsyncIterator[ShellManager]:
    work = tmp_path / "work"
    work.mkdir()
    manager = ShellManager(
        session_id="sess-1", workdir=str(work), env={"CORRAL_TEST": "yes"}, output_dir=str(tmp_path / "out")
    )
    await manager.start()
    yield manager
    await manager.aclose()


async def run(shells: ShellManager, command: str, emit: Callable[[CmdChunk], None] | None = None, **kw: object) -> CmdOutput:
    return await shells.run(CmdRun(id=new_id(), command=command, **kw), emit)  # type: ignore[arg-type]


async def send(shells: ShellManager, text: str, **kw: object) -> CmdOutput:
    return await run(shells, text, is_input=True, **kw)


async def wait_for_output(shells: ShellManager, first: CmdOutput, wanted: str, shell: str = "main") -> str:
    """Keep waiting with empty is_input until ``wanted`` shows up (or the command ends)."""
    seen = first.content
    result = first
    for _ in range(30):
        if wanted in seen or result.status != "running":
            break
        result = await send(shells, "", shell=shell, soft_timeout_s=0.3)
        seen += result.content
    return seen


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def echo_ok(shells: ShellManager, shell: str = "main") -> None:
    result = await run(shells, "echo ok", shell=shell, timeout_s=10)
    assert (result.status, result.content) == ("completed", "ok\n")


# ------------------------------------------------------------------------ basics


async def test_echo_returns_output_exit_code_and_identity(shells: ShellManager) -> None:
    action = CmdRun(id=new_id(), command="echo hi")
    result = await shells.run(action)
    assert result.content == "hi\n"
    assert (result.status, result.exit_code) == ("completed", 0)
    assert (result.cause, result.session_id, result.shell) == (action.id, "sess-1", "main")
    assert result.id != action.id
    assert result.working_dir == shells.cwd()


async def test_failing_command_reports_its_exit_code(shells: ShellManager) -> None:
    result = await run(shells, "ls /definitely/not/here")
    assert result.status == "completed"
    assert result.exit_code == 2
    assert "No such file" in result.content


async def test_session_env_and_no_pager_in_shell(shells: ShellManager) -> None:
    result = await run(shells, 'echo "$CORRAL_TEST $PAGER $GIT_PAGER $LANG"')
    assert result.content == "yes cat cat C.UTF-8\n"


async def test_printf_without_newline_is_not_glued_to_the_prompt(shells: ShellManager) -> None:
    result = await run(shells, "printf abc")
    assert (result.content, result.exit_code) == ("abc", 0)
    assert (await run(shells, "echo next")).content == "next\n"


async def test_utf8_split_across_reads_survives(shells: ShellManager) -> None:
    result = await run(shells, "printf 'é%.0s' $(seq 1 5000)")
    assert result.content == "é" * 5000


async def test_cwd_persists_across_commands(shells: ShellManager, tmp_path: Path) -> None:
    await run(shells, f"cd {tmp_path}")
    result = await run(shells, "pwd")
    assert result.content == f"{tmp_path}\n"
    assert result.working_dir == str(tmp_path)
    assert shells.cwd() == str(tmp_path)


async def test_env_persists_across_commands(shells: ShellManager) -> None:
    await run(shells, "export FOO=bar")
    assert (await run(shells, "echo $FOO")).content == "bar\n"


async def test_action_cwd_is_entered_and_persists(shells: ShellManager, tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()
    result = await run(shells, "pwd", cwd=str(tmp_path / "sub dir"))
    assert result.content == f"{tmp_path / 'sub dir'}\n"
    assert (await run(shells, "pwd")).content == f"{tmp_path / 'sub dir'}\n"


async def test_missing_action_cwd_fails_without_running(shells: ShellManager, tmp_path: Path) -> None:
    result = await run(shells, "touch ran", cwd=str(tmp_path / "missing"))
    assert result.status == "failed"
    assert "missing" in result.content and "not run" in result.content
    assert not (tmp_path / "work" / "ran").exists()


async def test_action_env_is_exported_and_persists(shells: ShellManager) -> None:
    result = await run(shells, 'echo "$GREETING"; bash -c \'echo "$GREETING"\'', env={"GREETING": "it's a 'test'"})
    assert result.content == "it's a 'test'\nit's a 'test'\n"
    assert (await run(shells, 'echo "$GREETING"')).content == "it's a 'test'\n"


# ---------------------------------------------------------------- multi-line input


async def test_multi_line_script_runs_every_line(shells: ShellManager) -> None:
    result = await run(shells, "echo one\ncd /\necho two\nfalse")
    assert result.content == "one\ntwo\n"
    assert (result.exit_code, result.working_dir) == (1, "/")


async def test_heredoc(shells: ShellManager) -> None:
    result = await run(shells, "cat > notes.txt <<'EOF'\nfirst $HOME\n  second\nEOF\ncat notes.txt")
    assert result.content == "first $HOME\n  second\n"


async def test_backslash_continuation(shells: ShellManager) -> None:
    result = await run(shells, "echo one \\\n  two \\\n  three")
    assert result.content == "one two three\n"


async def test_for_loop_over_several_lines(shells: ShellManager) -> None:
    result = await run(shells, "for i in 1 2 3; do\n  echo \"n=$i\"\ndone")
    assert result.content == "n=1\nn=2\nn=3\n"


async def test_command_longer_than_a_tty_line(shells: ShellManager) -> None:
    line = "x" * 6000
    result = await run(shells, f"cat > long.txt <<'EOF'\n{line}\nEOF\nwc -c < long.txt")
    assert (result.content, result.exit_code) == ("6001\n", 0)


# ------------------------------------------------------------------ interactive


async def test_read_prompt_then_input(shells: ShellManager) -> None:
    first = await run(shells, 'read -p "Name: " name; echo "hello $name"', soft_timeout_s=0.3)
    assert first.status == "running"
    second = await send(shells, "bob")
    assert first.content + second.content == "Name: hello bob\n"
    assert (second.status, second.exit_code) == ("completed", 0)


async def test_python_repl_via_input(shells: ShellManager) -> None:
    started = await run(shells, "python3", soft_timeout_s=0.5)
    assert started.status == "running"
    answered = await send(shells, "print(6*7)")
    assert "42" in await wait_for_output(shells, answered, "42")
    result = await send(shells, "exit()")
    for _ in range(30):
        if result.status != "running":
            break
        result = await send(shells, "", soft_timeout_s=0.3)
    assert (result.status, result.exit_code) == ("completed", 0)


async def test_soft_timeout_returns_running_then_empty_input_gets_the_rest(shells: ShellManager) -> None:
    first = await run(shells, "echo start; sleep 0.6; echo end", soft_timeout_s=0.2)
    assert (first.status, first.exit_code) == ("running", None)
    assert first.hint and "is_input" in first.hint and "C-c" in first.hint
    rest = await send(shells, "")
    assert (rest.status, rest.exit_code) == ("completed", 0)
    assert first.content + rest.content == "start\nend\n"


async def test_ctrl_c_interrupts_a_running_command(shells: ShellManager) -> None:
    first = await run(shells, "sleep 100", soft_timeout_s=0.2)
    assert first.status == "running"
    result = await send(shells, "C-c")
    assert (result.status, result.exit_code) == ("interrupted", 130)
    await echo_ok(shells)


async def test_ctrl_z_suspends_and_returns_to_the_shell(shells: ShellManager) -> None:
    assert (await run(shells, "sleep 100", soft_timeout_s=0.2)).status == "running"
    result = await send(shells, "C-z")
    assert (result.status, result.exit_code) == ("completed", 148)
    assert "Stopped" in result.content
    await run(shells, "kill -9 %1")


async def test_input_with_nothing_running_is_not_executed(shells: ShellManager) -> None:
    result = await send(shells, "hello")
    assert result.status == "not_executed"
    assert result.hint and "no command is running" in result.hint.lower()


async def test_busy_shell_refuses_a_new_command(shells: ShellManager) -> None:
    assert (await run(shells, "sleep 100", soft_timeout_s=0.2)).status == "running"
    result = await run(shells, "echo hi")
    assert result.status == "not_executed"
    assert result.hint and "busy" in result.hint and "sleep 100" in result.hint
    assert (await send(shells, "C-c")).status == "interrupted"


# ---------------------------------------------------------------------- timeouts


async def test_hard_timeout_interrupts_with_ctrl_c(shells: ShellManager) -> None:
    result = await run(shells, "echo before; sleep 100", timeout_s=0.3)
    assert (result.status, result.exit_code) == ("hard_timeout", 130)
    assert result.content.startswith("before\n")
    assert result.hint and "C-c" in result.hint
    await echo_ok(shells)


async def test_hard_timeout_kills_a_group_that_ignores_ctrl_c(shells: ShellManager) -> None:
    result = await run(shells, "bash -c 'trap \"\" INT; sleep 100'", timeout_s=0.2)
    assert (result.status, result.exit_code) == ("hard_timeout", 137)
    assert result.hint and "SIGKILL" in result.hint
    await echo_ok(shells)


# ---------------------------------------------------------------- shells & pids


async def test_second_shell_runs_concurrently(shells: ShellManager, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    waiting = run(shells, f"while [ ! -e {flag} ]; do sleep 0.01; done; echo main-done", timeout_s=20)
    other = run(shells, f"cd {tmp_path} && touch {flag} && echo other-done", shell="other", timeout_s=20)
    main_result, other_result = await asyncio.gather(waiting, other)
    assert (main_result.content, main_result.shell) == ("main-done\n", "main")
    assert (other_result.content, other_result.shell) == ("other-done\n", "other")
    assert shells.cwd("other") == str(tmp_path)
    assert shells.cwd("main") == str(tmp_path / "work")


async def test_pid_is_the_real_pid_of_a_long_command(shells: ShellManager) -> None:
    result = await run(shells, "sleep 5", soft_timeout_s=0.3)
    assert result.status == "running" and result.pid is not None
    cmdline = Path(f"/proc/{result.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == b"sleep"
    await send(shells, "C-c")


async def test_exit_reports_status_and_restarts_the_shell(shells: ShellManager) -> None:
    await run(shells, "export GONE=1")
    old_pid = (await run(shells, "echo $$")).content
    result = await run(shells, "exit 3")
    assert (result.status, result.exit_code) == ("completed", 3)
    again = await run(shells, 'echo "$$ ${GONE:-unset}"')
    assert again.status == "completed"
    new_pid, gone = again.content.split()
    assert new_pid != old_pid.strip() and gone == "unset"


async def test_killed_shell_fails_the_running_command_and_restarts(shells: ShellManager) -> None:
    result = await run(shells, "echo dying; kill -9 $$")
    assert result.status == "failed"
    assert result.hint and "signal 9" in result.hint
    await echo_ok(shells)


async def test_aclose_kills_running_processes_and_answers_waiters(shells: ShellManager) -> None:
    started = asyncio.get_running_loop().create_future()
    running = asyncio.ensure_future(
        run(shells, "echo started; sleep 100", shell="bg", emit=lambda c: started.done() or started.set_result(c))
    )
    await started
    other = await run(shells, "sleep 100", soft_timeout_s=0.2)
    await shells.aclose()
    result = await running
    assert result.status == "failed" and result.content.startswith("started")
    for _ in range(200):
        if is_gone(other.pid or 0):
            break
        await asyncio.sleep(0.01)
    assert is_gone(other.pid or 0)
    await shells.aclose()  # idempotent


# ------------------------------------------------------------- streaming & caps


async def test_chunks_stream_for_a_slow_loop_without_the_sentinel(shells: ShellManager) -> None:
    chunks: list[CmdChunk] = []
    action = CmdRun(id=new_id(), command="for i in 1 2 3; do echo $i; sleep 0.2; done")
    result = await shells.run(action, chunks.append)
    assert result.content == "1\n2\n3\n"
    assert len(chunks) >= 2
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(c.cause == action.id and c.session_id == "sess-1" for c in chunks)
    streamed = "".join(c.data for c in chunks)
    assert result.content.startswith(streamed) and streamed.startswith("1\n")
    assert not any("\x1e" in c.data or "\x1f" in c.data for c in chunks)


async def test_fast_command_emits_no_chunks(shells: ShellManager) -> None:
    chunks: list[CmdChunk] = []
    result = await run(shells, "echo quick", emit=chunks.append)
    assert result.content == "quick\n" and chunks == []


async def test_output_cap_keeps_head_and_tail_and_writes_the_full_log(shells: ShellManager, tmp_path: Path) -> None:
    action = CmdRun(id=new_id(), command="seq 1 30000")
    result = await shells.run(action)
    full = "".join(f"{i}\n" for i in range(1, 30001))
    assert result.truncated
    assert result.full_output_path == str(tmp_path / "out" / log_name(action.id))
    assert Path(result.full_output_path).read_text() == full
    assert result.content.startswith(full[:10_000]) and result.content.endswith(full[-20_000:])
    assert f"{len(full) - 30_000} characters omitted" in result.content
    assert len(result.content) < 30_500


async def test_small_output_writes_no_log(shells: ShellManager, tmp_path: Path) -> None:
    result = await run(shells, "seq 1 100")
    assert not result.truncated and result.full_output_path is None
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


async def test_streamed_chunks_carry_the_whole_output(shells: ShellManager) -> None:
    chunks: list[CmdChunk] = []
    out = await shells.run(CmdRun(id="stream-all", command="echo a; sleep 0.2; echo b; sleep 0.2; printf tail"), chunks.append)
    assert chunks, "a command that sleeps must stream"
    assert "".join(c.data for c in chunks) == out.content == "a\nb\ntail"
    assert [c.seq for c in chunks] == list(range(len(chunks)))
