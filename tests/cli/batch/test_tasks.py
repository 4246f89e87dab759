"""Task lines, results files and the progress line: no deployment needed."""

import io

import msgspec

from cli.batch import BadLine, BatchStats, ProgressBar, ResultsFile, Task, TaskResult, parse_tasks, recorded_ids


def test_a_valid_line_becomes_a_task_with_defaults():
    [task] = parse_tasks(['{"id": "a", "eval": ["true"]}'])
    assert task == Task(id="a", eval=["true"]) and task.expect_exit_code == 0 and task.patch is None


def test_an_unknown_field_is_a_bad_line_with_its_line_number():
    items = parse_tasks(['{"id": "a", "eval": ["true"]}', "", '{"id": "b", "eval": ["true"], "evl": []}'])
    assert isinstance(items[0], Task)
    bad = items[1]
    assert isinstance(bad, BadLine) and bad.line == 3 and bad.id == "b"
    assert bad.message.startswith("line 3:") and "evl" in bad.message


def test_broken_json_and_missing_eval_are_bad_lines():
    items = parse_tasks(["{not json", '{"id": "x"}', '{"id": "y", "eval": []}'])
    assert [type(i) for i in items] == [BadLine] * 3
    assert [i.id for i in items] == ["@line1", "x", "y"]


def test_a_repeated_id_is_a_bad_line():
    items = parse_tasks(['{"id": "a", "eval": ["true"]}', '{"id": "a", "eval": ["false"]}'])
    assert isinstance(items[1], BadLine) and items[1].id == "a@line2" and "duplicate" in items[1].message


async def test_results_file_appends_lines_and_recovers_from_a_torn_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id":"old","status":"passed","duration_s":1.0}\n{"id":"torn","sta')
    assert recorded_ids(path) == {"old"}
    results = ResultsFile(path)
    await results.append(TaskResult(id="new", status="failed", duration_s=0.5))
    results.close()
    assert recorded_ids(path) == {"old", "new"}
    last = path.read_bytes().splitlines()[-1]
    assert msgspec.json.decode(last, type=TaskResult).status == "failed"


def _finished(stats, status):
    stats.task_started()
    result = TaskResult(id=status, status=status, duration_s=0.1)
    stats.task_finished(result)
    return result


def test_progress_without_a_tty_prints_a_line_per_finished_task():
    out = io.StringIO()
    bar, stats = ProgressBar(out, tty=False), BatchStats(3)
    bar(stats, None)
    for status in ("passed", "error"):
        bar(stats, _finished(stats, status))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "2/3 done" in lines[1] and "1 passed" in lines[1] and "1 errors" in lines[1] and "tasks/min" in lines[1]
    assert "ETA" in lines[1]


def test_progress_on_a_tty_is_a_live_bar_with_rate_eta_and_outcomes():
    out = io.StringIO()
    bar, stats = ProgressBar(out, tty=True), BatchStats(2)
    bar(stats, None)
    bar(stats, _finished(stats, "timeout"))
    bar.close()
    text = out.getvalue()
    assert "1/2" in text and "1 timeouts" in text and "tasks/min" in text and "ETA" in text
    assert "\x1b[" in text  # drawn in place with terminal control sequences
