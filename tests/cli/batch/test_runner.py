"""run_batch end to end: real NATS, a real controller and worker, real local sandboxes."""

import pytest

from cli.batch import BatchStats, TaskResult, run_batch

from .helpers import diff_for, make_repo, read_results, write_tasks


async def run(client, tmp_path, tasks, **options):
    out = tmp_path / "results.jsonl"
    summary = await run_batch(client, write_tasks(tmp_path / "tasks.jsonl", tasks), out_path=out,
                              concurrency=options.pop("concurrency", 2), **options)
    return summary, read_results(out)


async def test_a_task_whose_eval_exits_as_expected_passes(client, tmp_path):
    summary, results = await run(client, tmp_path, [
        {"id": "ok", "eval": ["echo fine; exit 3", "exit 3"], "expect_exit_code": 3},
    ])
    r = results["ok"]
    assert (r["status"], r["exit_code"], r["step"]) == ("passed", 3, "eval[1]")
    assert "$ echo fine; exit 3\nfine\n" in r["output_tail"] and r["worker_id"] and summary.passed == 1


async def test_a_task_whose_eval_exits_otherwise_fails_at_that_command(client, tmp_path):
    _, results = await run(client, tmp_path, [
        {"id": "bad", "eval": ["echo checking; false", "echo never"]},
    ])
    r = results["bad"]
    assert (r["status"], r["exit_code"], r["step"]) == ("failed", 1, "eval[0]")
    assert "checking" in r["output_tail"] and "never" not in r["output_tail"]


async def test_a_task_over_its_budget_times_out(client, tmp_path):
    _, results = await run(client, tmp_path, [{"id": "slow", "eval": ["sleep 30"], "timeout_s": 0.5}])
    r = results["slow"]
    assert (r["status"], r["step"]) == ("timeout", "eval[0]") and r["duration_s"] < 10


async def test_a_failing_setup_step_is_an_error_naming_the_step(client, tmp_path):
    _, results = await run(client, tmp_path, [
        {"id": "setup", "setup": ["true", "echo no mirror >&2; exit 4"], "eval": ["true"]},
    ])
    r = results["setup"]
    assert (r["status"], r["step"], r["exit_code"]) == ("error", "setup[1]", 4)
    assert "setup step 1 exited with 4" in r["output_tail"] and "no mirror" in r["output_tail"]


async def test_a_sandbox_that_dies_is_an_error_not_a_failure(client, tmp_path):
    # The executor is the parent of the task's shell: killing it kills the sandbox.
    _, results = await run(client, tmp_path, [{"id": "dies", "eval": ["kill -9 $PPID; sleep 10"]}])
    r = results["dies"]
    assert (r["status"], r["step"]) == ("error", "eval[0]") and "sandbox_died" in r["output_tail"]


async def test_files_and_a_patch_are_applied_in_the_workdir_before_eval(client, tmp_path):
    patch = "--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-old\n+new\n"
    _, results = await run(client, tmp_path, [{
        "id": "plain", "setup": ["mkdir -p proj"], "workdir": "proj", "files": {"x.txt": "old\n", "sub/y": "y\n"},
        "patch": patch, "eval": ["test \"$(cat x.txt)\" = new && cat sub/y && pwd"],
    }])
    r = results["plain"]
    assert r["status"] == "passed" and r["output_tail"].rstrip().endswith("/proj")


async def test_a_gold_patch_in_a_git_repository_passes(client, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, {"bug.sh": "exit 1\n"})
    patch = diff_for(repo, {"bug.sh": "exit 0\n"})
    _, results = await run(client, tmp_path, [
        {"id": "git", "setup": [f"git clone -q {repo} work"], "workdir": "work", "patch": patch, "eval": ["bash bug.sh"]},
    ])
    assert results["git"]["status"] == "passed"


async def test_a_patch_that_does_not_apply_fails_the_task(client, tmp_path):
    patch = "--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-something else\n+new\n"
    _, results = await run(client, tmp_path, [
        {"id": "noapply", "files": {"x.txt": "old\n"}, "patch": patch, "eval": ["true"]},
    ])
    r = results["noapply"]
    assert (r["status"], r["step"]) == ("failed", "patch") and "does not apply" in r["output_tail"]


async def test_a_malformed_line_is_an_error_with_its_line_number_and_the_rest_runs(client, tmp_path):
    summary, results = await run(client, tmp_path, [
        {"id": "first", "eval": ["true"]},
        '{"id": "typo", "evals": ["true"]}',
        "{broken",
        {"id": "last", "eval": ["true"]},
    ])
    assert results["first"]["status"] == results["last"]["status"] == "passed"
    assert results["typo"]["status"] == "error" and results["typo"]["output_tail"].startswith("line 2:")
    assert results["@line3"]["status"] == "error" and results["@line3"]["output_tail"].startswith("line 3:")
    assert (summary.ran, summary.passed, summary.errors) == (4, 2, 2)


async def test_running_again_skips_every_recorded_task(client, tmp_path):
    tasks = [{"id": f"t{n}", "eval": ["true"]} for n in range(3)]
    first, _ = await run(client, tmp_path, tasks)
    created = []
    second, results = await run(client, tmp_path, tasks + [{"id": "new", "eval": ["true"]}],
                                progress=lambda stats, result: created.append(result))
    assert (first.ran, second.ran, second.skipped) == (3, 1, 3)
    assert set(results) == {"t0", "t1", "t2", "new"}
    assert [r.id for r in created if r is not None] == ["new"]


async def test_tasks_run_concurrently_up_to_the_limit(client, tmp_path):
    stamp = "python3 -c 'import time; print(time.time())'"
    tasks = [{"id": f"s{n}", "eval": [f"{stamp}; sleep 0.5; {stamp}"]} for n in range(4)]
    summary, results = await run(client, tmp_path, tasks, concurrency=4)
    spans = [tuple(map(float, r["output_tail"].split("\n")[1:3])) for r in results.values()]
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end, f"all four sleeps should overlap: {spans}"
    assert sum(r["duration_s"] for r in results.values()) > summary.wall_s


async def test_retries_rerun_a_task_that_ended_in_error(client, tmp_path):
    marker = tmp_path / "attempted"  # the local backend sees host paths
    _, results = await run(client, tmp_path, [
        {"id": "flaky", "setup": [f"test -e {marker} || {{ touch {marker}; exit 1; }}"], "eval": ["true"]},
    ], retries=1)
    assert (results["flaky"]["status"], results["flaky"]["attempts"]) == ("passed", 2)


async def test_an_unknown_backend_is_an_error_for_every_task_not_a_crash(client, tmp_path):
    summary, results = await run(client, tmp_path, [{"id": "a", "eval": ["true"]}, {"id": "b", "eval": ["true"]}],
                                 backend="no-such-backend")
    assert summary.errors == 2 and {r["step"] for r in results.values()} == {"create"}
    assert "backend_unavailable" in results["a"]["output_tail"]


async def test_the_progress_callback_sees_every_start_and_finish(client, tmp_path):
    seen: list[tuple[int, int, TaskResult | None]] = []

    def progress(stats: BatchStats, result):
        seen.append((stats.running, stats.done, result))

    await run(client, tmp_path, [{"id": "a", "eval": ["true"]}], progress=progress)
    assert [(running, done) for running, done, _ in seen] == [(1, 0), (0, 1)] and seen[1][2].id == "a"


@pytest.mark.parametrize("concurrency", [0])
async def test_concurrency_below_one_is_refused(client, tmp_path, concurrency):
    with pytest.raises(ValueError):
        await run(client, tmp_path, [], concurrency=concurrency)
