"""One task in one session: setup, files, patch, eval — and the status they add up to."""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import time
from typing import Any

import msgspec
import structlog

from protocol import CmdOutput, CmdRun, CorralError, Error, FileWrite, FileWritten, codes, new_id

from ._tasks import Task, TaskResult, TaskStatus, tail

log = structlog.get_logger()

# How long past a command's hard timeout to wait for its answer before calling the sandbox dead.
ANSWER_GRACE_S = 30.0
# `no_capacity` means every worker is full: wait for a slot this long before giving up.
CREATE_WAIT_S = 300.0
CLEANUP_TIMEOUT_S = 5.0

_PROBE = 'pwd -P; mktemp -d "${TMPDIR:-/tmp}/corral-batch.XXXXXX"'
_APPLY = (
    'if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]; '
    "then git apply --verbose --whitespace=nowarn {patch}; "
    "else patch -p1 --batch --forward --no-backup-if-mismatch < {patch}; fi"
)


class _Stop(Exception):
    """Ends a task early with a status (internal control flow of ``_TaskRun``)."""

    def __init__(self, status: TaskStatus, step: str, output: str, exit_code: int | None = None) -> None:
        super().__init__(status, step)
        self.status, self.step, self.output, self.exit_code = status, step, output, exit_code


class _TaskRun:
    """The steps of one task against an open session, under the task's time budget."""

    def __init__(self, session: Any, task: Task) -> None:
        self._session = session
        self._task = task
        self._deadline = time.monotonic() + task.timeout_s
        self.tmp_dir: str | None = None

    async def execute(self) -> _Stop:
        task = self._task
        probe = await self._cmd(_PROBE, step="probe")
        lines = probe.content.split()
        if probe.exit_code != 0 or len(lines) != 2:
            raise _Stop("error", "probe", f"cannot read the sandbox's directory: {probe.content}", probe.exit_code)
        base, self.tmp_dir = lines
        workdir = posixpath.join(base, task.workdir) if task.workdir else base
        for n, command in enumerate(task.setup):
            out = await self._cmd(command, step=f"setup[{n}]")
            if out.exit_code != 0:
                raise _Stop("error", f"setup[{n}]", f"setup step {n} exited with {out.exit_code}: {command}\n"
                            f"{out.content}", out.exit_code)
        for path, text in task.files.items():
            await self._write(posixpath.join(workdir, path), text, step="files")
        if task.patch:
            patch_path = posixpath.join(self.tmp_dir, "task.patch")
            await self._write(patch_path, task.patch, step="patch")
            out = await self._cmd(_APPLY.format(patch=shlex.quote(patch_path)), step="patch", cwd=workdir)
            if out.exit_code != 0:
                raise _Stop("failed", "patch", f"the patch does not apply (exit {out.exit_code}):\n{out.content}",
                            out.exit_code)
        outputs: list[str] = []
        for n, command in enumerate(task.eval):
            out = await self._cmd(command, step=f"eval[{n}]", cwd=workdir)
            outputs.append(f"$ {command}\n{out.content}")
            if out.exit_code != task.expect_exit_code:
                return _Stop("failed", f"eval[{n}]", "".join(outputs), out.exit_code)
        return _Stop("passed", f"eval[{len(task.eval) - 1}]", "".join(outputs), out.exit_code)

    def _remaining(self, step: str) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Stop("timeout", step, f"the task's {self._task.timeout_s:g} s budget ran out before {step}")
        return remaining

    async def _cmd(self, command: str, *, step: str, cwd: str | None = None) -> CmdOutput:
        remaining = self._remaining(step)
        action = CmdRun(id=new_id(), command=command, cwd=cwd, timeout_s=remaining)
        obs = await self._session.run(action, wait_s=remaining + ANSWER_GRACE_S)
        match obs:
            case CmdOutput(status="completed"):
                return obs
            case CmdOutput(status="hard_timeout"):
                raise _Stop("timeout", step, f"{step} hit the task's {self._task.timeout_s:g} s budget: {command}\n"
                            f"{obs.content}", obs.exit_code)
            case CmdOutput():
                raise _Stop("error", step, f"{step} ended with status {obs.status}: {obs.hint or ''}\n{obs.content}",
                            obs.exit_code)
            case Error():
                raise _Stop("error", step, f"{step}: {obs.code}: {obs.message}")
            case _:
                raise _Stop("error", step, f"{step}: unexpected observation {type(obs).__name__}")

    async def _write(self, path: str, text: str, *, step: str) -> None:
        remaining = self._remaining(step)
        obs = await self._session.run(FileWrite(id=new_id(), path=path, content=text), wait_s=remaining + ANSWER_GRACE_S)
        if not isinstance(obs, FileWritten):
            detail = f"{obs.code}: {obs.message}" if isinstance(obs, Error) else type(obs).__name__
            raise _Stop("error", step, f"cannot write {path}: {detail}")


async def run_task(client: Any, task: Task, *, backend: str | None = None, labels: dict[str, str] | None = None,
                   create_wait_s: float = CREATE_WAIT_S) -> TaskResult:
    """Run one task in a fresh session and always close it. Never raises for a task's failure."""
    started = time.monotonic()
    spec: dict[str, Any] = {"labels": {**(labels or {}), "task": task.id}}
    if task.image:
        spec["image"] = task.image
    if task.mounts:
        spec["mounts"] = [msgspec.to_builtins(m) for m in task.mounts]
    if backend:
        spec["backend"] = backend
    try:
        session = await _create(client, spec, create_wait_s)
    except CorralError as exc:
        return TaskResult(id=task.id, status="error", step="create", duration_s=_since(started),
                          output_tail=f"the session could not be created: {exc.code}: {exc.message}")
    run = _TaskRun(session, task)
    outcome = _Stop("error", "run", "the task was cancelled")
    try:
        outcome = await run.execute()
    except _Stop as stop:
        outcome = stop
    except Exception as exc:  # NATS gone, a broken connection: infrastructure, never the task's fault
        log.warning("batch_task_crashed", task_id=task.id, session_id=session.session_id, error=repr(exc))
        outcome = _Stop("error", "run", f"{type(exc).__name__}: {exc}")
    finally:
        duration_s = _since(started)
        # After an infrastructure error the sandbox may be gone: do not wait on it to clean up.
        await _close(session, run.tmp_dir if outcome.status != "error" else None)
    return TaskResult(id=task.id, status=outcome.status, duration_s=duration_s, exit_code=outcome.exit_code,
                      output_tail=tail(outcome.output), worker_id=session.info.worker_id, step=outcome.step,
                      session_id=session.session_id)


async def _create(client: Any, spec: dict[str, Any], wait_s: float) -> Any:
    give_up = time.monotonic() + wait_s
    delay_s = 0.2
    while True:
        try:
            return await client.create_session(**spec)
        except CorralError as exc:
            if exc.code != codes.NO_CAPACITY or "at capacity" not in exc.message or time.monotonic() > give_up:
                raise
        await asyncio.sleep(delay_s)  # back off until a worker has a free slot
        delay_s = min(delay_s * 2, 2.0)


async def _close(session: Any, tmp_dir: str | None) -> None:
    try:
        if tmp_dir and session.status not in ("lost", "closed"):
            await session.run(CmdRun(id=new_id(), command=f"rm -rf -- {shlex.quote(tmp_dir)}",
                                     timeout_s=CLEANUP_TIMEOUT_S), wait_s=CLEANUP_TIMEOUT_S + 1)
        await session.close()
    except Exception as exc:  # the sandbox may already be gone; the controller reaps what is left
        log.warning("batch_session_close_failed", session_id=session.session_id, error=repr(exc))
        try:
            await session.detach()
        except Exception:  # the connection itself is gone: nothing left to unsubscribe from
            pass


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
