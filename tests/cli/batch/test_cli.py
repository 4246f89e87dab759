"""`corral batch` as a real process: exit 0 when the batch ran, 1 when any task ended in `error`."""

import json

from ..test_cli import corral
from .helpers import read_results, write_tasks


async def test_batch_run_exits_0_when_the_batch_ran_even_with_failures(deployment, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"id": "p", "eval": ["true"]}, {"id": "f", "eval": ["false"]}])
    code, out, err = await corral(deployment.url, "batch", "run", str(tasks), "--concurrency", "2")
    results = read_results(tmp_path / "tasks.results.jsonl")
    assert code == 0, err
    assert {k: r["status"] for k, r in results.items()} == {"p": "passed", "f": "failed"}
    assert json.loads(out)["failed"] == 1
    assert "2/2 done" in err and "tasks/min" in err  # stderr is not a tty: a line per finished task


async def test_batch_run_exits_1_when_a_task_ended_in_error(deployment, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"id": "p", "eval": ["true"]}, '{"id": "typo", "evl": []}'])
    out = tmp_path / "out.jsonl"
    code, _, err = await corral(deployment.url, "batch", "run", str(tasks), "--out", str(out), "-q")
    assert code == 1 and "1 errors" in err
    assert read_results(out)["typo"]["status"] == "error"


async def test_batch_swebench_writes_a_tasks_file(tmp_path):
    instance = {"instance_id": "o__n-1", "repo": "o/n", "base_commit": "abc", "patch": "", "test_patch": "",
                "FAIL_TO_PASS": "[\"t1\"]", "PASS_TO_PASS": "[]"}
    (tmp_path / "instances.json").write_text(json.dumps([instance]))
    out = tmp_path / "tasks.jsonl"
    code, _, err = await corral("nats://127.0.0.1:1", "batch", "swebench", str(tmp_path / "instances.json"),
                                "--repos-dir", str(tmp_path), "--test-cmd", "o/n=pytest -x", "--out", str(out))
    task = json.loads(out.read_text())
    assert code == 0 and "wrote 1 tasks" in err and "no mirror" in err
    assert task["eval"] == ["pytest -x t1"] and task["patch"] is None
