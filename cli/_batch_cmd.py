"""`corral batch`: SWE-Bench-style evaluation batches."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import msgspec

from protocol import Client

from ._common import nats_option, print_json, run_cli


@click.group()
def batch() -> None:
    """Evaluation batches (SWE-Bench style): tasks.jsonl in, results.jsonl out."""


@batch.command("run")
@click.argument("tasks_path", type=click.Path(exists=True, dir_okay=False))
@nats_option
@click.option("--concurrency", "-j", default=4, show_default=True, type=click.IntRange(min=1), help="Tasks at once")
@click.option("--backend", default=None, help="Backend for every session (default: the controller's choice)")
@click.option("--out", "out_path", default=None,
              help="Results JSONL (default: <tasks>.results.jsonl); ids already in it are skipped")
@click.option("--retries", default=0, show_default=True, type=click.IntRange(min=0),
              help="Re-run a task that ended in `error` up to this many more times")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr")
def batch_run(tasks_path: str, nats_url: str, concurrency: int, backend: str | None, out_path: str | None,
              retries: int, quiet: bool) -> None:
    """Run the tasks of TASKS_PATH over concurrent sessions.

    Prints the summary as JSON on stdout. Exit status: 0 when the batch ran (whatever tasks
    passed or failed), 1 when any task ended in `error` (infrastructure, or a malformed line)
    or corral could not be reached.
    """
    from .batch import ProgressBar, run_batch

    if out_path is None:
        stem = tasks_path[: -len(".jsonl")] if tasks_path.endswith(".jsonl") else tasks_path
        out_path = stem + ".results.jsonl"
    bar = None if quiet else ProgressBar(sys.stderr)

    async def main() -> Any:
        async with await Client.connect(nats_url) as client:
            return await run_batch(client, tasks_path, concurrency=concurrency, out_path=out_path, backend=backend,
                                   progress=bar, retries=retries)

    summary = _run_batch(main(), bar, out_path)
    _finish(summary, f"[batch] {summary.ran} ran, {summary.skipped} skipped (already in {out_path}), "
                     f"{summary.passed} passed, {summary.failed} failed, {summary.errors} errors, {summary.timeouts} "
                     f"timeouts in {summary.wall_s:.1f} s ({summary.tasks_per_min:.1f} tasks/min)")


def _run_batch(batch: Any, bar: Any, out_path: str) -> Any:
    """Run a batch to its summary; Ctrl-C says how to resume (exit 130); the progress bar always closes."""
    try:
        return run_cli(batch)
    except KeyboardInterrupt:
        click.echo(f"\n[batch] interrupted; run the same command again to resume from {out_path}", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()


def _finish(summary: Any, line: str) -> None:
    """The summary line on stderr, the summary as JSON on stdout; exit 1 when any task ended in error."""
    click.echo(line, err=True)
    print_json(summary)
    sys.exit(1 if summary.errors else 0)


@batch.command("swebench")
@click.argument("instances_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--repos-dir", required=True, help="Mirrors as <owner>__<name> (a path the sandboxes can read)")
@click.option("--test-cmd", "test_cmds", multiple=True, required=True, help="REPO=CMD, e.g. owner/name='pytest -rA'")
@click.option("--setup-cmd", "setup_cmds", multiple=True, help="REPO=CMD run in the checkout after it; repeatable")
@click.option("--predictions", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Model predictions (instance_id, model_patch): use them instead of the gold patches")
@click.option("--workdir", default="repo", show_default=True, help="Where the checkout goes in the sandbox")
@click.option("--image", default=None, help="Image for every session")
@click.option("--timeout", "timeout_s", default=1800.0, show_default=True, type=float, help="Budget per task")
@click.option("--out", "out_path", required=True, help="The tasks JSONL to write")
def batch_swebench(instances_path: str, repos_dir: str, test_cmds: tuple[str, ...], setup_cmds: tuple[str, ...],
                   predictions: str | None, workdir: str, image: str | None, timeout_s: float, out_path: str) -> None:
    """Convert SWE-Bench instances (JSONL or a JSON array) into a tasks file for `corral batch run`."""
    from .batch import SwebenchError, convert_instances, load_instances, load_predictions, mirror_path

    setups: dict[str, list[str]] = {}
    for repo, command in _pairs_in_order(setup_cmds):
        setups.setdefault(repo, []).append(command)
    try:
        instances = load_instances(instances_path)
        tasks = convert_instances(instances, repos_dir=repos_dir, test_cmds=dict(_pairs_in_order(test_cmds)),
                                  setup_cmds=setups, workdir=workdir, image=image, timeout_s=timeout_s,
                                  predictions=load_predictions(predictions) if predictions else None)
    except (SwebenchError, msgspec.DecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    with open(out_path, "wb") as f:
        for task in tasks:
            f.write(msgspec.json.encode(task) + b"\n")
    absent = sorted({i.repo for i in instances if not os.path.isdir(mirror_path(repos_dir, i.repo))})
    if absent:
        click.echo(f"warning: no mirror on this host for {', '.join(absent)} under {repos_dir}", err=True)
    click.echo(f"wrote {len(tasks)} tasks to {out_path}", err=True)


def _pairs_in_order(items: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected REPO=CMD, got {item!r}")
        out.append((key, value))
    return out


@batch.command("minisweagent")
@click.argument("instances_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "-c", "config_specs", multiple=True, required=True,
              help="mini-swe-agent config: a YAML file, a builtin name (swebench.yaml) or key=value; repeatable, merged")
@click.option("--model", "-m", default=None, help="Model name (litellm's, e.g. anthropic/claude-sonnet-4-5-20250929)")
@nats_option
@click.option("--concurrency", "-j", default=4, show_default=True, type=click.IntRange(min=1), help="Instances at once")
@click.option("--backend", default=None, help="Backend for every session (default: the config's, else the controller's)")
@click.option("--image", default=None, help="Image for every session (default: the instance's image_name, else the config's)")
@click.option("--out", "out_path", default=None,
              help="Results JSONL (default: <instances>.mini.results.jsonl); ids already in it are skipped")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr")
def batch_minisweagent(instances_path: str, config_specs: tuple[str, ...], model: str | None, nats_url: str,
                       concurrency: int, backend: str | None, image: str | None, out_path: str | None,
                       quiet: bool) -> None:
    """Run mini-swe-agent on every instance of INSTANCES_PATH (instance_id, problem_statement), one corral
    session each; predictions go to <out stem>.preds.jsonl, trajectories to <out stem>.trajs/.

    Exit status as for `batch run`: 1 when any instance ended in `error`.
    """
    try:
        from minisweagent.config import get_config_from_spec
        from minisweagent.utils.serialize import recursive_merge
    except ImportError as exc:
        raise click.ClickException(f"needs mini-swe-agent: pip install 'corral[minisweagent]' ({exc})") from None

    from .batch import MiniBatchError, ProgressBar, run_minisweagent_batch

    config = recursive_merge(*(get_config_from_spec(spec) for spec in config_specs))
    if model:
        config.setdefault("model", {})["model_name"] = model
    if out_path is None:
        stem = instances_path[: -len(".jsonl")] if instances_path.endswith(".jsonl") else instances_path
        out_path = stem + ".mini.results.jsonl"
    bar = None if quiet else ProgressBar(sys.stderr)
    try:
        summary = _run_batch(run_minisweagent_batch(instances_path, config, out_path=out_path, concurrency=concurrency,
                                                    nats_url=nats_url, backend=backend, image=image, progress=bar),
                             bar, out_path)
    except MiniBatchError as exc:
        raise click.ClickException(str(exc)) from None
    _finish(summary, f"[batch] {summary.ran} ran, {summary.skipped} skipped (already in {out_path}), "
                     f"{summary.passed} submitted, {summary.failed} stopped, {summary.errors} errors, "
                     f"{summary.timeouts} timeouts in {summary.wall_s:.1f} s")
