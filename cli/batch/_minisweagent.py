"""mini-swe-agent over a SWE-Bench-style instance list: one agent run in one corral session per instance.

    summary = await run_minisweagent_batch("instances.jsonl", config, out_path="mini.results.jsonl")

Each instance (``instance_id``, ``problem_statement``, and optionally ``image_name`` /
``docker_image`` and whatever the startup command renders) gets a ``CorralEnvironment`` (the
config's ``environment`` section plus the batch's broker, backend and image), the config's
``run.env_startup_command`` (rendered with the instance's fields, as mini-swe-agent's own
``swebench`` runner does), then ``DefaultAgent(model, env, **config["agent"]).run(problem_statement)``
with a fresh model from ``config["model"]``.

Outputs, all next to ``out_path`` and appended as each instance finishes: ``out_path`` holds one
``TaskResult`` a line (the same file ``corral batch run`` writes, so progress and resume are the
same: ids already there are skipped), ``<stem>.preds.jsonl`` the predictions (``instance_id``,
``model_name_or_path``, ``model_patch``: what ``corral batch swebench --predictions`` and the
SWE-Bench harness read), and ``<stem>.trajs/<id>.traj.json`` mini's own trajectories.

A result's status: ``passed`` when the agent submitted, ``timeout`` when it ran out of wall time
(``TimeExceeded``), ``failed`` when it stopped otherwise (step or cost limit, format errors),
``error`` when the sandbox or the model failed. Its ``step`` is mini's ``exit_status``.
"""

from __future__ import annotations

import asyncio
from collections import deque
import copy
import os
from pathlib import Path
import time
import traceback
from typing import Any

import msgspec
import structlog

from protocol import new_id

from ._progress import BatchStats, Progress
from ._runner import BatchSummary
from ._tasks import ResultsFile, TaskResult, TaskStatus, recorded_ids, tail

log = structlog.get_logger()

ENVIRONMENT_CLASS = "corral_integrations.minisweagent.CorralEnvironment"
_STATUS: dict[str, TaskStatus] = {"Submitted": "passed", "TimeExceeded": "timeout"}


class MiniBatchError(Exception):
    """The instances or the config cannot be used (a missing field, another environment class)."""


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    model_name_or_path: str
    model_patch: str


def load_instances(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """JSONL or a JSON array. Instances stay dicts: their fields are the dataset's, and any of them
    may be rendered by the startup command; ``instance_id`` and ``problem_statement`` are required."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"["):
        items = msgspec.json.decode(data, type=list[dict[str, Any]])
    else:
        items = [msgspec.json.decode(line, type=dict[str, Any]) for line in data.splitlines() if line.strip()]
    for n, item in enumerate(items, start=1):
        missing = [k for k in ("instance_id", "problem_statement") if not isinstance(item.get(k), str)]
        if missing:
            raise MiniBatchError(f"instance {n} of {path} has no {' or '.join(missing)} (a string)")
    return items


def output_paths(out_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(predictions JSONL, trajectories directory) next to the results file."""
    out = Path(out_path)
    stem = out.name.removesuffix(".jsonl").removesuffix(".results")
    return out.with_name(stem + ".preds.jsonl"), out.with_name(stem + ".trajs")


def environment_config(config: dict[str, Any], instance: dict[str, Any], *, nats_url: str | None,
                       backend: str | None, image: str | None, labels: dict[str, str]) -> dict[str, Any]:
    """The ``CorralEnvironment`` keyword arguments for one instance (image: ``--image``, else the
    instance's ``image_name`` / ``docker_image``, else the config's)."""
    env = copy.deepcopy(config.get("environment", {}))
    cls = env.pop("environment_class", ENVIRONMENT_CLASS)
    if cls != ENVIRONMENT_CLASS:
        raise MiniBatchError(f"the config's environment_class is {cls!r}; corral batch runs {ENVIRONMENT_CLASS}")
    chosen = image or instance.get("image_name") or instance.get("docker_image") or env.get("image")
    extra = {"nats_url": nats_url, "backend": backend, "image": chosen}
    env.update({k: v for k, v in extra.items() if v is not None})
    env["labels"] = {**env.get("labels", {}), **labels}
    return env


def run_instance(instance: dict[str, Any], config: dict[str, Any], env_kwargs: dict[str, Any],
                 trajs_dir: Path) -> tuple[TaskResult, Prediction]:
    """One agent run, synchronous (mini-swe-agent is); never raises for the instance's failure."""
    from jinja2 import StrictUndefined, Template
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.models import get_model

    from corral_integrations.minisweagent import CorralEnvironment

    instance_id = instance["instance_id"]
    started = time.monotonic()
    model_config = config.get("model", {})
    model_name = str(model_config.get("model_name") or os.environ.get("MSWEA_MODEL_NAME") or "")
    env = agent = None
    status: TaskStatus = "error"
    exit_status, submission, detail = "", "", ""
    try:
        model = get_model(config=model_config)
        model_name = model.config.model_name
        env = CorralEnvironment(**env_kwargs)
        if startup := config.get("run", {}).get("env_startup_command"):
            out = env.execute({"command": Template(startup, undefined=StrictUndefined).render(**instance)})
            if out["returncode"] != 0:
                raise RuntimeError(f"the startup command exited with {out['returncode']}: "
                                   f"{out['exception_info'] or out['output']}")
        agent = DefaultAgent(model, env, **config.get("agent", {}))
        info = agent.run(instance["problem_statement"])
        exit_status, submission = info.get("exit_status", ""), info.get("submission", "") or ""
        status = _STATUS.get(exit_status, "failed")
        detail = submission
    except Exception as exc:  # the sandbox, the model or the config failed: the batch goes on
        exit_status = type(exc).__name__
        detail = traceback.format_exc()
        log.warning("batch_mini_instance_failed", task_id=instance_id, error=repr(exc))
    finally:
        session_id = worker_id = None
        if env is not None:
            session_id = env.session_id
            worker_id = env.serialize()["info"]["corral"]["worker_id"]
            if agent is not None:
                agent.save(trajs_dir / f"{instance_id}.traj.json",
                           {"info": {"exit_status": exit_status, "submission": submission}, "instance_id": instance_id})
            try:
                env.close()
            except Exception as exc:  # the sandbox may already be gone; the controller reaps it
                log.warning("batch_session_close_failed", session_id=session_id, error=repr(exc))
    result = TaskResult(id=instance_id, status=status, duration_s=round(time.monotonic() - started, 3),
                        output_tail=tail(detail), worker_id=worker_id, step=exit_status, session_id=session_id)
    return result, Prediction(instance_id=instance_id, model_name_or_path=model_name, model_patch=submission)


async def run_minisweagent_batch(
    instances: list[dict[str, Any]] | str | os.PathLike[str],
    config: dict[str, Any],
    *,
    out_path: str | os.PathLike[str],
    concurrency: int = 1,
    nats_url: str | None = None,
    backend: str | None = None,
    image: str | None = None,
    progress: Progress | None = None,
    batch_id: str | None = None,
) -> BatchSummary:
    """Run every instance not yet recorded in ``out_path``, ``concurrency`` at once (each in a thread)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if isinstance(instances, (str, os.PathLike)):
        instances = load_instances(instances)
    batch_id = batch_id or "b" + new_id()
    already = recorded_ids(out_path)
    todo = deque(i for i in instances if i["instance_id"] not in already)
    preds_path, trajs_dir = output_paths(out_path)
    stats = BatchStats(len(todo), skipped=len(instances) - len(todo))
    preds_path.parent.mkdir(parents=True, exist_ok=True)
    results, preds = ResultsFile(out_path), open(preds_path, "ab")  # noqa: SIM115 - closed below
    log.info("batch_started", batch_id=batch_id, tasks=len(todo), skipped=stats.skipped, concurrency=concurrency,
             agent="minisweagent")

    async def lane() -> None:
        while todo:
            instance = todo.popleft()
            stats.task_started()
            if progress:
                progress(stats, None)
            env_kwargs = environment_config(config, instance, nats_url=nats_url, backend=backend, image=image,
                                            labels={"batch": batch_id, "task": instance["instance_id"]})
            result, prediction = await asyncio.to_thread(run_instance, instance, config, env_kwargs, trajs_dir)
            await asyncio.to_thread(_append, preds, msgspec.json.encode(prediction) + b"\n")
            await results.append(result)  # last: an id in the results file has its prediction
            stats.task_finished(result)
            log.info("batch_task_finished", batch_id=batch_id, task_id=result.id, status=result.status,
                     exit_status=result.step, duration_s=result.duration_s, worker_id=result.worker_id)
            if progress:
                progress(stats, result)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(todo))):
                group.create_task(lane())
    finally:
        results.close()
        preds.close()
    summary = BatchSummary(
        batch_id=batch_id, total=len(instances), ran=stats.done, skipped=stats.skipped, passed=stats.passed,
        failed=stats.failed, errors=stats.errors, timeouts=stats.timeouts, wall_s=round(stats.elapsed_s, 3),
        tasks_per_min=round(stats.rate_per_min, 2), out_path=str(out_path),
    )
    log.info("batch_finished", **msgspec.structs.asdict(summary))
    return summary


def _append(f: Any, line: bytes) -> None:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())
