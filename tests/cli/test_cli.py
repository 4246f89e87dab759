"""The `corral` command line, run as a real process against a real deployment."""

import asyncio
import json
import signal
import sys

import pytest

from actors.embedded import free_port


async def corral(url, *args, timeout=60, env=None):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env={"CORRAL_NATS_URL": url, "PATH": "/usr/bin:/bin", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_exec_streams_output_and_exits_with_the_commands_code(deployment):
    code, out, _ = await corral(deployment.url, "exec", "--", "echo hi; exit 3")
    assert (code, out) == (3, "hi\n")


async def test_exec_joins_several_arguments_as_one_command(deployment):
    code, out, _ = await corral(deployment.url, "exec", "--", "printf", "%s-%s", "a b", "c")
    assert (code, out) == (0, "a b-c\n")


async def test_session_state_persists_across_exec(deployment):
    code, sid, _ = await corral(deployment.url, "session", "create", "--env", "FOO=bar")
    sid = sid.strip()
    assert code == 0 and sid.startswith("s")
    await corral(deployment.url, "exec", "--session", sid, "--", "cd /tmp && export X=1")
    code, out, _ = await corral(deployment.url, "exec", "--session", sid, "--", "echo $PWD $X $FOO")
    assert out == "/tmp 1 bar\n"
    code, listing, _ = await corral(deployment.url, "session", "list")
    assert sid in listing
    code, out, _ = await corral(deployment.url, "session", "close", sid)
    assert code == 0 and out.strip() == f"{sid} closed"


async def test_session_create_takes_a_secret_from_its_own_environment_and_output_masks_it(deployment):
    value = "Xq7hT2pLm9Zr4Wk8Bn3Vc6Ys"
    code, sid, _ = await corral(deployment.url, "session", "create", "--secret", "API_TOKEN", env={"API_TOKEN": value})
    assert code == 0
    code, out, _ = await corral(deployment.url, "exec", "--session", sid.strip(), "--", "echo $API_TOKEN ${#API_TOKEN}")
    assert (code, out) == (0, "[secret:API_TOKEN] 24\n")
    await corral(deployment.url, "session", "close", sid.strip())
    code, _, err = await corral(deployment.url, "session", "create", "--secret", "NOT_SET")
    assert code == 2 and "not set: NOT_SET" in err


async def test_session_expose_prints_the_url_and_unexpose_closes_it(deployment):
    _, sid, _ = await corral(deployment.url, "session", "create")
    sid = sid.strip()
    code, url, _ = await corral(deployment.url, "session", "expose", sid, "8123")
    assert code == 0 and url.startswith("http://127.0.0.1:") and url.endswith("/\n")
    code, out, _ = await corral(deployment.url, "session", "expose", sid, "8123", "--json")
    assert code == 0 and json.loads(out)["url"] == url.strip() and json.loads(out)["port"] == 8123
    code, out, _ = await corral(deployment.url, "session", "unexpose", sid, "8123")
    assert code == 0 and out.startswith(f"{sid} port 8123 no longer on 127.0.0.1:")
    code, _, err = await corral(deployment.url, "session", "unexpose", sid, "8123")
    assert code != 0 and "not_exposed" in err


async def test_closing_an_unknown_session_fails_with_its_code(deployment):
    code, _, err = await corral(deployment.url, "session", "close", "snope")
    assert code == 1 and "unknown_session" in err


async def test_without_a_broker_the_cli_says_so(tmp_path):
    code, _, err = await corral(f"nats://127.0.0.1:{free_port()}", "session", "list")
    assert code == 1 and "cannot connect to NATS" in err


async def test_workers_lists_the_worker(deployment):
    code, out, _ = await corral(deployment.url, "workers", "--json")
    workers = json.loads(out)
    assert code == 0 and workers[0]["backend"] == "local" and workers[0]["capacity"] == 64


async def test_schema_prints_json_schema_of_every_event(deployment):
    code, out, _ = await corral(deployment.url, "schema")
    schema = json.loads(out)
    assert code == 0 and "CmdRun" in schema["$defs"] and "CmdOutput" in schema["$defs"]


async def test_audit_tail_shows_actions_observations_and_status(deployment):
    code, sid, _ = await corral(deployment.url, "session", "create")
    sid = sid.strip()
    await corral(deployment.url, "exec", "--session", sid, "--", "echo audited")
    code, out, _ = await corral(deployment.url, "audit", "tail", "--session", sid, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    channels = [(r["channel"], r["kind"]) for r in records]
    assert ("action", "cmd_run") in channels and ("obs", "cmd_output") in channels
    assert any(r["channel"] == "status" for r in records)
    assert any(r["event"].get("content") == "audited\n" for r in records)


@pytest.mark.slow
async def test_up_runs_everything_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "up", "--port", str(port), "--data-dir", str(tmp_path / "d"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"corral is up" in line
        url = f"nats://127.0.0.1:{port}"
        code, out, _ = await corral(url, "exec", "--", "echo through up")
        assert (code, out) == (0, "through up\n")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert list((tmp_path / "d" / "audit").glob("audit-*.jsonl"))
        code, out, _ = await corral(url, "audit", "verify", str(tmp_path / "d" / "audit"))
        assert code == 0 and out.startswith("ok: ")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_exec_of_a_slow_command_prints_all_of_its_streamed_output(deployment):
    code, out, _ = await corral(deployment.url, "exec", "--", "for i in 1 2 3; do echo $i; sleep 0.3; done; printf end")
    assert (code, out) == (0, "1\n2\n3\nend\n")


async def test_status_prints_workers_and_sessions(deployment):
    code, sid, _ = await corral(deployment.url, "session", "create", "--label", "team=a")
    code, out, _ = await corral(deployment.url, "status", "--once")
    assert code == 0 and "workers: 1" in out and sid.strip() in out and "team=a" in out


def test_the_live_status_view_draws_tables_of_workers_and_sessions():
    import io

    from rich.console import Console

    from cli.main import _status_tables
    from protocol import SessionInfo, WorkerInfo

    out = io.StringIO()
    Console(file=out, width=140).print(_status_tables(
        [WorkerInfo(worker_id="w-one", backend="docker", capacity=8, running=3, draining=True)],
        [SessionInfo(session_id="s-one", worker_id="w-one", backend="docker", status="lost", labels={"task": "t1"})]))
    text = out.getvalue()
    assert "w-one" in text and "draining" in text and "s-one" in text and "lost=1" in text and "task=t1" in text


async def test_exec_ipython_runs_a_cell_and_exits_by_its_status(deployment):
    code, out, _ = await corral(deployment.url, "exec", "--ipython", "--", "print(6 * 7)")
    assert (code, out) == (0, "42\n")
    code, out, _ = await corral(deployment.url, "exec", "--ipython", "--", "1/0")
    assert code == 1 and "ZeroDivisionError" in out


async def test_plugins_lists_the_installed_plugins_with_their_variants(deployment):
    code, out, _ = await corral(deployment.url, "plugins", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["jupyter"]["kinds"] == ["ipython_run"] and rows["jupyter"]["variant"] == "jupyter"
    assert rows["agent_skills"]["requires"] == ["jupyter"] and rows["shell"]["core"]


@pytest.mark.timeout(180)
async def test_bench_ipython_prints_the_kernel_numbers(deployment):
    code, out, err = await corral(deployment.url, "bench", "--ipython", "--actions", "20", "--sessions", "1", "--json",
                                  timeout=150)
    results = json.loads(out)
    assert code == 0, err
    assert results["ipython_round_trip"]["n"] == 20 and results["floor_kernel_execute"]["p50_ms"] > 0
    assert results["idle_rss"]["with_jupyter_mb"] > 0


async def test_a_plugin_installed_by_another_package_is_found_by_its_entry_point(tmp_path):
    """A third party adds a plugin by installing a package: a module and an entry point, no corral change."""
    site = tmp_path / "site"
    (site / "corral_echo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "corral_echo_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-echo-plugin\nVersion: 0.1\n")
    (site / "corral_echo_plugin-0.1.dist-info" / "entry_points.txt").write_text("[corral.plugins]\necho = corral_echo_plugin:Echo\n")
    (site / "corral_echo_plugin.py").write_text(
        "from executor.plugins import SandboxPlugin\n\n"
        "class Echo(SandboxPlugin):\n"
        "    kinds = frozenset({'browse_url'})\n"
        "    variant = 'echo'\n\n"
        "    async def handle(self, action, emit):\n"
        "        raise NotImplementedError\n")
    import os

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "plugins", "--json", stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])})
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["echo"]["kinds"] == ["browse_url"] and rows["echo"]["variant"] == "echo"
