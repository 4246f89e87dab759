"""Batches of evaluation tasks (SWE-Bench style) run over corral sessions.

    async with await Client.connect(url) as client:
        summary = await run_batch(client, "tasks.jsonl", concurrency=8, out_path="results.jsonl")

Task and result formats: ``_tasks.py``; one task's steps: ``_task_run.py``; the SWE-Bench
adapter: ``_swebench.py``; mini-swe-agent per instance: ``_minisweagent.py``. The CLI is
``corral batch run|swebench|minisweagent``.
"""

from ._minisweagent import MiniBatchError, run_minisweagent_batch
from ._progress import BatchStats, Progress, ProgressBar, status_line
from ._runner import BatchSummary, run_batch
from ._swebench import SwebenchError, SwebenchInstance, convert_instances, load_instances, load_predictions, mirror_path
from ._task_run import run_task
from ._tasks import BadLine, ResultsFile, Task, TaskResult, TaskStatus, load_tasks, parse_tasks, recorded_ids

__all__ = [
    "BadLine", "BatchStats", "BatchSummary", "MiniBatchError", "Progress", "ProgressBar", "ResultsFile", "SwebenchError",
    "SwebenchInstance", "Task", "TaskResult", "TaskStatus", "convert_instances", "load_instances", "load_predictions",
    "load_tasks", "mirror_path",
    "parse_tasks", "recorded_ids", "run_batch", "run_minisweagent_batch", "run_task", "status_line",
]
