"""The jupyter plugin end to end: real ipykernel processes in local sandboxes, driven through NATS."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from protocol import CmdRun, Error, IPythonOutput, IPythonRun, codes, new_id

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def kernel_session(client):
    async with await client.create_session(plugins=["jupyter"], env={"FROM_SPEC": "spec"}) as s:
        yield s


async def test_state_persists_across_cells_and_results_come_in_order(kernel_session):
    first = await kernel_session.ipython("x = 6\nprint('out'); import sys; print('err', file=sys.stderr)\nx * 7")
    assert isinstance(first, IPythonOutput) and first.status == "completed", first
    assert first.content == "out\nerr\n42\n" and first.execution_count == 1 and not first.kernel_restarted
    again = await kernel_session.ipython("x + 1")
    assert (again.content, again.execution_count) == ("7\n", 2)


async def test_a_cell_with_no_output_says_so(kernel_session):
    out = await kernel_session.ipython("y = 1")
    assert out.content == "[Code executed successfully with no output]" and out.status == "completed"


async def test_the_kernel_follows_the_main_shells_directory_and_sees_the_sessions_environment(kernel_session, tmp_path):
    await kernel_session.cmd(f"mkdir -p {tmp_path}/here && cd {tmp_path}/here && export FROM_BASH=bash")
    out = await kernel_session.ipython("import os; print(os.getcwd()); print(os.environ['FROM_SPEC'], os.environ['FROM_BASH'])")
    assert out.content == f"{tmp_path}/here\nspec bash\n" and out.working_dir == f"{tmp_path}/here"
    moved = await kernel_session.ipython("%cd /\n")
    assert moved.working_dir == "/"  # the kernel may move on its own; bash leads only when bash moves
    await kernel_session.cmd("cd /tmp")
    assert (await kernel_session.ipython("import os; os.getcwd()")).content == "'/tmp'\n"


async def test_shell_escapes_and_magics_work(kernel_session):
    out = await kernel_session.ipython("!echo from-bash\n%time 1+1")
    assert "from-bash\n" in out.content and "Wall time" in out.content and out.status == "completed"


async def test_an_exception_is_an_error_with_a_plain_traceback_and_the_kernel_lives_on(kernel_session):
    out = await kernel_session.ipython("def f():\n    raise ValueError('bad value')\nf()")
    assert out.status == "error" and (out.error_name, out.error_value) == ("ValueError", "bad value")
    assert "\x1b[" not in out.traceback and "ValueError: bad value" in out.traceback and "f()" in out.traceback
    assert (await kernel_session.ipython("1")).status == "completed"


async def test_a_syntax_error_is_an_error(kernel_session):
    out = await kernel_session.ipython("def (:")
    assert isinstance(out, IPythonOutput), out
    assert out.status == "error" and out.error_name == "SyntaxError"


async def test_a_cell_past_its_timeout_is_interrupted_and_the_state_survives(kernel_session):
    await kernel_session.ipython("kept = 'yes'")
    started = time.monotonic()
    out = await kernel_session.ipython("import time\nprint('before', flush=True)\nwhile True: time.sleep(0.05)", timeout_s=1.5)
    assert out.status == "hard_timeout" and "before" in out.content and time.monotonic() - started < 15
    assert (await kernel_session.ipython("kept")).content == "'yes'\n"


async def test_a_kernel_that_kills_itself_is_answered_failed_and_the_next_cell_gets_a_fresh_one(kernel_session, client):
    await kernel_session.ipython("lost = 1")
    died = await kernel_session.ipython("import os; os._exit(3)")
    assert died.status == "failed" and "exit code 3" in died.reason
    info = await client.get_session(kernel_session.session_id)
    assert [(p.name, p.state) for p in info.plugins] == [("jupyter", "failed")]
    fresh = await kernel_session.ipython("'lost' in dir()")
    assert fresh.kernel_restarted and fresh.content == "False\n" and fresh.status == "completed"


async def test_a_kernel_killed_from_bash_is_restarted_on_the_next_cell(kernel_session):
    pid = (await kernel_session.ipython("import os; os.getpid()")).content.strip()
    await kernel_session.cmd(f"kill -9 {pid}")
    await asyncio.sleep(0.2)
    out = await kernel_session.ipython("import os; os.getpid()")
    assert out.status == "completed" and out.kernel_restarted and out.content.strip() != pid


async def test_restart_starts_a_fresh_kernel_and_empty_code_only_restarts(kernel_session):
    await kernel_session.ipython("gone = 1")
    only = await kernel_session.ipython("", restart=True)
    assert only.status == "completed" and only.kernel_restarted
    assert (await kernel_session.ipython("'gone' in dir()")).content == "False\n"


async def test_named_kernels_are_separate_processes(kernel_session):
    await kernel_session.ipython("name = 'main'")
    await kernel_session.ipython("name = 'other'", kernel="other")
    assert (await kernel_session.ipython("name")).content == "'main'\n"
    assert (await kernel_session.ipython("name", kernel="other")).content == "'other'\n"


async def test_a_long_cell_blocks_neither_the_shell_nor_another_kernel(kernel_session):
    await kernel_session.ipython("1")
    await kernel_session.ipython("1", kernel="k2")
    slow = asyncio.create_task(kernel_session.ipython("import time; time.sleep(4); 'slow'"))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    assert (await kernel_session.cmd("echo shell")).content == "shell\n"
    assert (await kernel_session.ipython("'quick'", kernel="k2")).content == "'quick'\n"
    assert time.monotonic() - started < 3
    assert (await slow).content == "'slow'\n"


async def test_long_cells_stream_chunks(kernel_session):
    chunks = []
    final = None
    async for obs in kernel_session.stream(IPythonRun(id=new_id(), code="import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.3)")):
        if isinstance(obs, IPythonOutput):
            final = obs
        else:
            chunks.append(obs.data)
    assert "".join(chunks) == "0\n1\n2\n" and final.content == "0\n1\n2\n"


async def test_ten_megabytes_of_output_are_bounded_and_kept_in_a_file(kernel_session):
    out = await kernel_session.ipython("print('x' * 10_000_000)")
    assert out.status == "completed" and out.truncated and len(out.content) < 40_000
    size = await kernel_session.cmd(f"wc -c < {out.full_output_path}")
    assert int(size.content) >= 10_000_000


async def test_png_displays_come_back_as_images_and_a_binary_display_is_an_error_not_a_crash(kernel_session):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    out = await kernel_session.ipython(f"from IPython.display import Image, display\ndisplay(Image(data={png!r}))")
    assert out.status == "completed" and len(out.images) == 1 and base64.b64decode(out.images[0]) == png
    binary = await kernel_session.ipython("from IPython.display import display\ndisplay({'application/octet-stream': b'\\x00\\xff'}, raw=True)")
    assert isinstance(binary, IPythonOutput) and binary.status in ("completed", "error")
    assert (await kernel_session.ipython("2")).content == "2\n"


async def test_plugin_states_in_session_info(kernel_session, client):
    declared = await client.get_session(kernel_session.session_id)
    assert [(p.name, p.state) for p in declared.plugins] == [("jupyter", "declared")]
    await kernel_session.ipython("1")
    for _ in range(50):
        info = await client.get_session(kernel_session.session_id)
        if info.plugins[0].state == "ready":
            break
        await asyncio.sleep(0.05)
    assert [(p.name, p.state) for p in info.plugins] == [("jupyter", "ready")]


async def test_ipython_without_the_plugin_is_plugin_not_enabled_and_says_how(session):
    out = await session.run(IPythonRun(id=new_id(), code="1"))
    assert isinstance(out, Error) and out.code == codes.PLUGIN_NOT_ENABLED and "plugins" in out.message
    assert (await session.run(CmdRun(id=new_id(), command="echo fine"))).content == "fine\n"


async def test_an_unknown_plugin_is_invalid_spec(client):
    from protocol import RequestError

    with pytest.raises(RequestError) as info:
        await client.create_session(plugins=["no-such-plugin"])
    assert info.value.code == codes.INVALID_SPEC and "no-such-plugin" in str(info.value)


async def test_a_session_that_never_runs_a_cell_starts_no_kernel(client):
    async with await client.create_session(plugins=["jupyter"]) as s:
        out = await s.cmd("ps -eo args | grep -c '[i]pykernel_launcher' || true")
        before = int(out.content.strip() or 0)
        await s.ipython("1")
        after = int((await s.cmd("ps -eo args | grep -c '[i]pykernel_launcher' || true")).content.strip())
    assert after == before + 1


async def test_agent_skills_are_imported_into_the_kernel_and_share_the_editors_undo_history(client, tmp_path):
    from protocol import FileEdit

    target = tmp_path / "notes.txt"
    target.write_text("alpha\nbeta\n")
    async with await client.create_session(plugins=["agent_skills"]) as s:
        info = await client.get_session(s.session_id)
        assert [p.name for p in info.plugins] == ["jupyter", "agent_skills"]
        shown = await s.ipython(f"open_file({str(target)!r})")
        assert shown.status == "completed", shown
        assert f"[File: {target} (2 lines total)]" in shown.content and "1|alpha" in shown.content
        edited = await s.ipython(f"file_editor(command='str_replace', path={str(target)!r}, old_str='beta', new_str='gamma')")
        assert edited.status == "completed" and target.read_text() == "alpha\ngamma\n", edited
        undone = await s.run(FileEdit(id=new_id(), command="undo_edit", path=str(target)))  # the action, not the cell
        assert target.read_text() == "alpha\nbeta\n", undone
