"""The SWE-Bench adapter on a tiny local mirror: conversion, then the converted tasks run for real."""

import json
import shlex

import msgspec
import pytest

from cli.batch import SwebenchError, SwebenchInstance, convert_instances, load_instances, run_batch

from .helpers import diff_for, make_repo, read_results, write_tasks

SOURCE = "def double(x):\n    return x + x + 1\n"
FIXED = "def double(x):\n    return x + x\n"
TESTS = ("import unittest\nfrom mathx import double\n\n\nclass TestDouble(unittest.TestCase):\n"
         "    def test_two(self):\n        self.assertEqual(double(2), 4)\n\n"
         "    def test_zero(self):\n        self.assertEqual(double(0), 0)\n")


@pytest.fixture
def mirror(tmp_path):
    """``<repos>/acme__mathx``: a repository whose ``double`` is off by one, and an instance for it."""
    repo = tmp_path / "repos" / "acme__mathx"
    base = make_repo(repo, {"mathx.py": SOURCE, "README": "x\n"})
    gold = diff_for(repo, {"mathx.py": FIXED})
    test_patch = diff_for(repo, {"test_mathx.py": TESTS})
    instance = {
        "instance_id": "acme__mathx-1", "repo": "acme/mathx", "base_commit": base, "patch": gold,
        "test_patch": test_patch, "FAIL_TO_PASS": json.dumps(["test_mathx.TestDouble.test_two"]),
        "PASS_TO_PASS": ["test_mathx.TestDouble.test_zero"], "problem_statement": "double is wrong",
    }
    (tmp_path / "instances.jsonl").write_text(json.dumps(instance) + "\n")
    return tmp_path


def convert(mirror, **options):
    return convert_instances(load_instances(mirror / "instances.jsonl"), repos_dir=str(mirror / "repos"),
                             test_cmds={"acme/mathx": "python3 -m unittest"}, **options)


def test_an_instance_becomes_clone_checkout_patch_and_test_command(mirror):
    [task] = convert(mirror)
    instance = json.loads((mirror / "instances.jsonl").read_text())
    assert task.id == "acme__mathx-1" and task.workdir == "repo"
    assert task.setup[0] == f"git clone -q {mirror / 'repos' / 'acme__mathx'} repo"
    assert instance["base_commit"] in task.setup[1]
    assert task.patch == instance["patch"] + instance["test_patch"]
    assert shlex.split(task.eval[0]) == ["python3", "-m", "unittest", "test_mathx.TestDouble.test_two",
                                         "test_mathx.TestDouble.test_zero"]


def test_predictions_replace_the_gold_patch_and_select_instances(mirror):
    [task] = convert(mirror, predictions={"acme__mathx-1": ""})
    assert task.patch.startswith("diff --git a/test_mathx.py")
    assert convert(mirror, predictions={"other": "x"}) == []


def test_a_repository_without_a_test_command_is_refused(mirror):
    with pytest.raises(SwebenchError, match="acme/mathx"):
        convert_instances([SwebenchInstance(instance_id="i", repo="acme/mathx", base_commit="c")], repos_dir="r",
                          test_cmds={})


async def test_converted_tasks_pass_with_the_gold_patch_and_fail_without_it(mirror, client, tmp_path):
    [gold] = convert(mirror)
    [empty] = convert(mirror, predictions={"acme__mathx-1": ""})
    tasks = [json.loads(msgspec.json.encode(gold)), {**json.loads(msgspec.json.encode(empty)), "id": "no-fix"}]
    out = tmp_path / "results.jsonl"
    await run_batch(client, write_tasks(tmp_path / "tasks.jsonl", tasks), concurrency=2, out_path=out)
    results = read_results(out)
    assert results["acme__mathx-1"]["status"] == "passed", results["acme__mathx-1"]["output_tail"]
    assert (results["no-fix"]["status"], results["no-fix"]["step"]) == ("failed", "eval[0]")
    assert "test_two" in results["no-fix"]["output_tail"]
