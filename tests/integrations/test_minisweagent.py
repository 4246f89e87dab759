"""mini-swe-agent 2.x on corral: ``CorralEnvironment`` beside mini's own ``LocalEnvironment`` (the same
dict for the same command: exit codes, merged stderr, a fresh process per call, the timeout result,
``Submitted``), on the local and Docker backends; its ``DefaultAgent`` with its deterministic test
model through a small task to completion; and ``corral batch minisweagent`` with resume."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import subprocess

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")  # mini prints a banner on import otherwise

import msgspec
import pytest
import yaml
from click.testing import CliRunner
from minisweagent.agents.default import DefaultAgent
from minisweagent.config import builtin_config_dir, get_config_from_spec
from minisweagent.environments import get_environment
from minisweagent.environments.local import LocalEnvironment
from minisweagent.exceptions import Submitted
from minisweagent.models.test_models import DeterministicModel, make_output

from cli.batch import run_minisweagent_batch
from cli.main import cli
from corral_integrations.minisweagent import CorralEnvironment

from .conftest import ThreadedCorral

CLASS = "corral_integrations.minisweagent.CorralEnvironment"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


DOCKER = _docker_answers()


@pytest.fixture(scope="module")
def docker_corral(tmp_path_factory):
    if not DOCKER:
        pytest.skip("no Docker engine answers (dockerd / DOCKER_HOST)")
    with ThreadedCorral(tmp_path_factory.mktemp("corral-docker"), backend="docker") as corral:
        yield corral.url


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.slow)])
def corral_env(request):
    """One CorralEnvironment per backend for the side-by-side tests (each test passes its own cwd)."""
    url = request.getfixturevalue("local_corral" if request.param == "local" else "docker_corral")
    with CorralEnvironment(nats_url=url, env={"GREETING": "hello from env"}) as env:
        yield env


@pytest.fixture(scope="module")
def local_env():
    return LocalEnvironment(env={"GREETING": "hello from env"})


SAME = [
    "echo hi",
    "echo out; echo err >&2; exit 3",  # stderr merged in order, the exit code kept
    "printf 'no newline'",
    "printf 'a\\r\\nb\\rc\\n'",  # newlines as subprocess's text mode reads them
    "test -t 1 && echo terminal || echo pipe",  # stdout is a pipe, not corral's PTY
    "test -t 0 && echo terminal || echo not-a-terminal",
    'echo "$GREETING"',
    "false",
    "exit 255",
    "no-such-command-here 2>/dev/null; echo $?",
    "for i in 1 2 3; do echo line $i; done; echo done >&2",
    "python3 -c 'import sys; print(\"x\" * 5000); sys.exit(7)'",
    "cat <<'EOF' | wc -c\n" + "a long heredoc line with $dollars and 'quotes'\n" * 200 + "EOF",  # over a tty line
]


@pytest.mark.parametrize("command", SAME)
def test_execute_answers_what_local_environment_answers(corral_env, local_env, command):
    assert corral_env.execute({"command": command}, cwd="/tmp") == local_env.execute({"command": command}, cwd="/tmp")


def test_a_long_output_keeps_the_head_and_tail_mini_templates_show(corral_env, local_env):
    action = {"command": "seq 1 20000"}  # 108 894 characters: over corral's 30 000 cap
    ours, theirs = corral_env.execute(action, cwd="/tmp"), local_env.execute(action, cwd="/tmp")
    assert ours["returncode"] == theirs["returncode"] == 0 and len(ours["output"]) > 10_000
    assert ours["output"][:5000] == theirs["output"][:5000] and ours["output"][-5000:] == theirs["output"][-5000:]
    assert "characters omitted" in ours["output"]


def test_cd_and_export_do_not_carry_over_to_the_next_call(corral_env, local_env):
    for env in (corral_env, local_env):
        env.execute({"command": "cd / && export LEFT_OVER=1"}, cwd="/tmp")
        assert env.execute({"command": "pwd; echo ${LEFT_OVER:-unset}"}, cwd="/tmp")["output"] == "/tmp\nunset\n"


def test_cwd_argument_and_default(corral_env):
    assert corral_env.execute({"command": "pwd"}, cwd="/")["output"] == "/\n"
    assert corral_env.execute({"command": "pwd"})["output"] == corral_env.base_dir + "\n"


def test_timeout_result_is_local_environments(corral_env, local_env):
    action = {"command": "echo started; sleep 30"}
    ours, theirs = corral_env.execute(action, cwd="/tmp", timeout=1), local_env.execute(action, cwd="/tmp", timeout=1)
    assert ours == theirs
    assert ours["returncode"] == -1 and ours["extra"]["exception_type"] == "TimeoutExpired"
    assert corral_env.execute({"command": "echo still usable"}, cwd="/tmp")["output"] == "still usable\n"


def test_a_background_process_holding_stdout_runs_into_the_timeout_as_in_local(corral_env, local_env):
    action = {"command": "sleep 30 & echo detached"}
    ours, theirs = corral_env.execute(action, cwd="/tmp", timeout=1), local_env.execute(action, cwd="/tmp", timeout=1)
    assert ours == theirs and ours["output"] == "detached\n"


@pytest.mark.parametrize("command", [
    "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; echo the patch; echo line 2",
    "printf '\\n  COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT  \\n'",
])
def test_submission_marker_raises_the_same_submitted(corral_env, local_env, command):
    raised = []
    for env in (corral_env, local_env):
        with pytest.raises(Submitted) as info:
            env.execute({"command": command}, cwd="/tmp")
        raised.append(info.value.messages)
    assert raised[0] == raised[1]
    assert raised[0][0]["extra"]["exit_status"] == "Submitted"


@pytest.mark.parametrize("command", [
    "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; exit 1",  # a failing command never submits
    "echo first; echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT",  # nor a marker that is not first
])
def test_no_submission_unless_the_marker_is_first_and_the_command_succeeds(corral_env, local_env, command):
    assert corral_env.execute({"command": command}, cwd="/tmp") == local_env.execute({"command": command}, cwd="/tmp")


def test_sh_interpreter_is_local_environments_shell(local_corral, local_env):
    with CorralEnvironment(nats_url=local_corral, interpreter=["/bin/sh", "-c"]) as env:
        command = "readlink /proc/$$/exe; echo $0"
        assert env.execute({"command": command}, cwd="/tmp") == local_env.execute({"command": command}, cwd="/tmp")


def test_missing_cwd_is_an_exception_result_not_a_crash(corral_env):
    out = corral_env.execute({"command": "pwd"}, cwd="/no/such/dir")
    assert out["returncode"] == -1 and "is not a directory" in out["exception_info"]


def test_template_vars_carry_the_sandboxs_uname(corral_env):
    got = corral_env.get_template_vars(task="t")
    assert {"system", "release", "version", "machine", "cwd", "timeout"} <= got.keys()
    assert got["system"] == "Linux" and got["task"] == "t" and got["corral_session_id"] == corral_env.session_id
    info = corral_env.serialize()["info"]
    assert info["config"]["environment_type"] == CLASS and info["corral"]["session_id"] == corral_env.session_id


def test_an_environment_dropped_unclosed_ends_its_session(local_corral):
    env = CorralEnvironment(nats_url=local_corral)
    session = env._session.session  # the async protocol.Session, kept past the environment
    del env
    gc.collect()
    assert session.status == "closed"


def test_execute_after_the_session_is_gone_is_an_exception_result(local_corral):
    env = CorralEnvironment(nats_url=local_corral)
    env.close()
    out = env.execute({"command": "echo hi"})
    assert out["returncode"] == -1 and out["exception_info"].startswith("An error occurred while executing the command")


def test_a_mistyped_config_key_fails_before_connecting():
    with pytest.raises(ValueError, match="imgae"):
        CorralEnvironment(nats_url="nats://127.0.0.1:1", imgae="python:3.12")


def test_yaml_config_selects_it_through_get_environment(local_corral, tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump({"environment": {"environment_class": CLASS, "nats_url": local_corral,
                                                    "timeout": 10, "env": {"PAGER": "cat"}}}))
    env = get_environment(get_config_from_spec(path)["environment"])
    try:
        assert isinstance(env, CorralEnvironment) and env.config.timeout == 10
        assert env.execute({"command": "echo $PAGER"})["output"] == "cat\n"
    finally:
        env.close()


# ---------------------------------------------------------------- mini's own agent, scripted

def _fix_the_bug_outputs() -> list[dict]:
    steps = [
        "cat > calc.py <<'EOF'\ndef add(a, b):\n    return a - b\nEOF",
        "python3 -B -c 'import calc; assert calc.add(2, 3) == 5, calc.add(2, 3)'",
        "sed -i 's/a - b/a + b/' calc.py",
        "python3 -B -c 'import calc; assert calc.add(2, 3) == 5, calc.add(2, 3)' && echo tests pass",
        "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat calc.py",
    ]
    return [make_output(f"step {n}", [{"command": c}], cost=0.0) for n, c in enumerate(steps)]


def _agent_config() -> dict:
    return get_config_from_spec(builtin_config_dir / "benchmarks" / "swebench.yaml")["agent"]


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.slow)])
def test_default_agent_fixes_a_bug_to_submission(request, backend, tmp_path):
    url = request.getfixturevalue("local_corral" if backend == "local" else "docker_corral")
    model = DeterministicModel(outputs=_fix_the_bug_outputs())
    with CorralEnvironment(nats_url=url, timeout=30) as env:
        agent = DefaultAgent(model, env, **{**_agent_config(), "output_path": tmp_path / "traj.json"})
        info = agent.run("Fix add() in calc.py")
    assert info["exit_status"] == "Submitted"
    assert info["submission"] == "def add(a, b):\n    return a + b\n"
    observations = [m["content"] for m in agent.messages if m["role"] == "user"][1:]
    assert "<returncode>1</returncode>" in observations[1] and "AssertionError: -1" in observations[1]
    assert "tests pass" in observations[3]
    saved = json.loads((tmp_path / "traj.json").read_text())
    assert saved["info"]["config"]["environment_type"] == CLASS


# ---------------------------------------------------------------- corral batch minisweagent

def _batch_config(url: str) -> dict:
    return {
        "agent": _agent_config(),
        "environment": {"environment_class": CLASS, "nats_url": url, "timeout": 30},
        "model": {"model_class": "minisweagent.models.test_models.DeterministicModel",
                  "model_name": "scripted", "outputs": _fix_the_bug_outputs()},
        "run": {"env_startup_command": "echo '{{instance_id}}' > instance.txt"},
    }


def _instances(path, n: int) -> None:
    path.write_text("".join(json.dumps({"instance_id": f"demo__calc-{i}", "problem_statement": "Fix add()",
                                        "repo": "demo/calc"}) + "\n" for i in range(n)))


def test_batch_runs_each_instance_in_its_own_session_and_resumes(local_corral, tmp_path):
    instances, out = tmp_path / "instances.jsonl", tmp_path / "mini.results.jsonl"
    _instances(instances, 3)
    config = _batch_config(local_corral)
    summary = asyncio.run(run_minisweagent_batch(instances, config, out_path=out, concurrency=2))
    assert (summary.ran, summary.passed, summary.errors) == (3, 3, 0)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["step"] for r in results} == {"Submitted"} and len({r["session_id"] for r in results}) == 3
    preds = [json.loads(line) for line in (tmp_path / "mini.preds.jsonl").read_text().splitlines()]
    assert sorted(p["instance_id"] for p in preds) == [f"demo__calc-{i}" for i in range(3)]
    assert {p["model_patch"] for p in preds} == {"def add(a, b):\n    return a + b\n"}
    assert {p["model_name_or_path"] for p in preds} == {"scripted"}
    traj = json.loads((tmp_path / "mini.trajs" / "demo__calc-1.traj.json").read_text())
    assert traj["info"]["exit_status"] == "Submitted" and traj["instance_id"] == "demo__calc-1"

    # resume: everything recorded is skipped; a lost line is run again
    again = asyncio.run(run_minisweagent_batch(instances, config, out_path=out))
    assert (again.ran, again.skipped) == (0, 3)
    kept = [line for line in out.read_text().splitlines() if "demo__calc-2" not in line]
    out.write_text("\n".join(kept) + "\n")
    resumed = asyncio.run(run_minisweagent_batch(instances, config, out_path=out))
    assert (resumed.ran, resumed.skipped, resumed.passed) == (1, 2, 1)
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == [f"demo__calc-{i}" for i in range(3)]


def test_batch_cli_runs_the_yaml_config_and_reports_a_failed_startup_as_error(local_corral, tmp_path):
    instances, out = tmp_path / "instances.jsonl", tmp_path / "cli.results.jsonl"
    _instances(instances, 2)
    config = _batch_config(local_corral)
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["batch", "minisweagent", str(instances), "-c", str(tmp_path / "mini.yaml"),
                                      "--nats", local_corral, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ran"], summary["passed"]) == (2, 2)

    broken = tmp_path / "broken.results.jsonl"
    result = CliRunner().invoke(cli, ["batch", "minisweagent", str(instances), "-c", str(tmp_path / "mini.yaml"),
                                      "-c", "run.env_startup_command=exit 4", "--nats", local_corral,
                                      "--out", str(broken), "-q", "-j", "1"])
    assert result.exit_code == 1
    rows = [msgspec.json.decode(line) for line in broken.read_bytes().splitlines()]
    assert {r["status"] for r in rows} == {"error"} and all("startup command exited with 4" in r["output_tail"] for r in rows)
