"""The named shells of one session: the executor's entry point for ``cmd_run``.

See ``_pty.py`` for how one shell works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import tempfile

from protocol import CmdOutput, CmdRun, CmdStatus, new_id

from ._output import _Output
from ._pty import (
    _ENV_NAME,
    DEFAULT_PATH,
    INPUT_QUIET_S,
    INTERRUPT_GRACE_S,
    KEYS,
    KILL_GRACE_S,
    START_TIMEOUT_S,
    Emit,
    _Shell,
    _short,
    _Waiter,
    _with_hint,
)


def base_env(env: dict[str, str]) -> dict[str, str]:
    """A sane environment for the shells with the session's ``env`` on top."""
    base = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "PS2": "",
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        "MANPAGER": "cat",
        "SYSTEMD_PAGER": "",
        "LESS": "-FRX",
        "VIRTUAL_ENV_DISABLE_PROMPT": "1",
    }
    for name in ("USER", "LOGNAME", "SHELL", "TMPDIR", "TZ"):
        if name in os.environ:
            base[name] = os.environ[name]
    return base | env


class ShellManager:
    """The named shells of one session."""

    def __init__(
        self,
        *,
        session_id: str,
        workdir: str,
        env: dict[str, str],
        output_dir: str,
        default_timeout_s: float | None = None,
        default_soft_timeout_s: float | None = None,
    ) -> None:
        self.session_id = session_id
        self.workdir = workdir
        self.env = base_env(env)
        self.output_dir = output_dir
        self.default_timeout_s = default_timeout_s
        self.default_soft_timeout_s = default_soft_timeout_s
        self._shells: dict[str, _Shell] = {}
        self._scratch: str | None = None
        self._closed = False

    async def __aenter__(self) -> ShellManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        await self._shell("main")

    def cwd(self, shell: str = "main") -> str:
        sh = self._shells.get(shell)
        return sh.cwd if sh is not None else self.workdir

    async def exported(self, timeout_s: float) -> dict[str, str]:
        """What the main shell exports now (``env -0`` run in it), or ``{}`` when it is busy or has
        output its next observation must carry: asking then would take the agent's place."""
        sh = self._shells.get("main")
        if sh is None or not sh.alive or sh.job is not None or sh.waiter is not None or sh.finished is not None:
            return {}
        path = os.path.join(self.scratch_dir(), f"env-{new_id()[:12]}")
        try:
            result = await self.run(CmdRun(id=new_id("env-"), command=f"env -0 > {shlex.quote(path)}", timeout_s=timeout_s))
            if result.status != "completed":
                return {}
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return {}
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        pairs = (item.decode("utf-8", "replace").partition("=") for item in data.split(b"\0") if item)
        return {name: value for name, _, value in pairs if name and not name.startswith("BASH_FUNC_")}

    def scratch_dir(self) -> str:
        """Where long commands are written to be sourced; made again if a command removed it."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="corral-sh-")
        else:
            os.makedirs(self._scratch, mode=0o700, exist_ok=True)
        return self._scratch

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        shells, self._shells = list(self._shells.values()), {}
        await asyncio.gather(*(sh.aclose() for sh in shells))
        for sh in shells:
            sh.out.discard()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    async def _shell(self, name: str) -> _Shell:
        if self._closed:
            raise RuntimeError("the shell manager is closed")
        sh = self._shells.get(name)
        if sh is None or not sh.alive:
            fresh = _Shell(self, name)
            fresh.spawn()
            if sh is not None:  # keep what the dead shell printed after its last observation
                fresh.out, fresh.finished = sh.out, sh.finished
                sh.out = _Output(self.output_dir)
            self._shells[name] = sh = fresh
        if not sh.ready.done():
            try:
                await asyncio.wait_for(asyncio.shield(sh.ready), START_TIMEOUT_S)
            except TimeoutError:
                sh.kill()
                raise RuntimeError(f"bash did not start within {START_TIMEOUT_S:g}s") from None
        return sh

    def _obs(self, action: CmdRun, status: CmdStatus, content: str = "", **kw: object) -> CmdOutput:
        return CmdOutput(
            id=new_id(), cause=action.id, session_id=self.session_id, shell=action.shell,
            content=content, status=status, **kw,  # type: ignore[arg-type]
        )

    async def run(self, action: CmdRun, emit: Emit | None = None) -> CmdOutput:
        """Run a command, or feed input to the one running; returns its observation."""
        if action.is_input:
            return await self._input(action, emit)
        try:
            sh = await self._shell(action.shell)
        except (OSError, RuntimeError) as exc:
            return self._obs(action, "failed", f"could not start bash: {exc}")
        if sh.job is not None or sh.waiter is not None:
            busy = sh.job.command if sh.job else "another action"
            hint = (
                f"Shell {action.shell!r} is busy with {_short(busy)!r}; send input to it with is_input=true, "
                "wait for it with an empty is_input command, interrupt it with C-c, or use another shell name."
            )
            return self._obs(action, "not_executed", hint=hint, working_dir=sh.cwd, pid=sh.job.fg_pid if sh.job else None)
        preamble, error = self._preamble(sh, action)
        if error:
            return self._obs(action, "failed", error, working_dir=sh.cwd)
        hint = None
        if sh.finished is not None:
            code, command = sh.finished
            hint = (
                f"{_short(command)!r} finished (exit code {code}) after its last observation; the "
                "output it printed since then comes first in this output."
            )
        command = action.command.replace("\r\n", "\n").rstrip("\n")
        # begin first: if it fails (the scratch file cannot be written) no waiter is left attached
        # to block the shell. Nothing is read between the two calls, so no output is missed.
        sh.begin(action.command, preamble + command)
        w = sh.attach(action, emit, action.soft_timeout_s or self.default_soft_timeout_s)
        result = await self._wait(sh, w, action)
        if hint and result.status == "completed" and result.hint is None:
            result = _with_hint(result, hint)
        return result

    def _preamble(self, sh: _Shell, action: CmdRun) -> tuple[str, str | None]:
        lines = []
        if action.cwd:
            path = os.path.join(sh.cwd, os.path.expanduser(action.cwd))
            if not os.path.isdir(path):
                return "", f"cwd {action.cwd!r} is not a directory (resolved to {path!r}); the command was not run"
            lines.append(f"cd -- {shlex.quote(os.path.normpath(path))}")
        if action.env:
            bad = [k for k in action.env if not _ENV_NAME.match(k)]
            if bad:
                return "", f"invalid environment variable names {bad!r}; the command was not run"
            lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in action.env.items()))
        return "".join(line + "\n" for line in lines), None

    async def _input(self, action: CmdRun, emit: Emit | None) -> CmdOutput:
        sh = self._shells.get(action.shell)
        if sh is not None and sh.waiter is not None:
            key = KEYS.get(action.command)
            if key is not None and sh.job is not None:
                # A key is out of band: it reaches the command another action is waiting on (C-c
                # interrupts it), and that action carries the outcome.
                sh.send(key, interrupt=key == b"\x03")
                sh.job.interrupted = sh.job.interrupted or key == b"\x03"
                hint = f"Sent {action.command} to the running command; action {sh.waiter.action.id} gets its outcome."
                return self._obs(action, "running", hint=hint)
            hint = f"Another action is already waiting on shell {action.shell!r}; try again when it returns."
            return self._obs(action, "not_executed", hint=hint)
        if sh is None or sh.job is None:
            if sh is not None and sh.finished is not None:
                return self._collect_finished(sh, action)
            hint = f"No command is running in shell {action.shell!r}; send the command without is_input."
            return self._obs(action, "not_executed", hint=hint, working_dir=self.cwd(action.shell))
        key = KEYS.get(action.command)
        if key is not None:
            sh.send(key, interrupt=key == b"\x03")
            sh.job.interrupted = sh.job.interrupted or key == b"\x03"
        elif action.command:
            sh.job.interrupted = False
            sh.send(action.command.replace("\r\n", "\n").encode() + b"\n")
        soft_s = action.soft_timeout_s or self.default_soft_timeout_s or INPUT_QUIET_S
        w = sh.attach(action, emit, soft_s)
        return await self._wait(sh, w, action)

    def _collect_finished(self, sh: _Shell, action: CmdRun) -> CmdOutput:
        """The command ended while nobody was waiting: hand over its output and exit code."""
        code, _ = sh.finished or (None, "")
        sh.finished = None
        out, sh.out = sh.out, _Output(self.output_dir)
        content, truncated, path = out.finish(action.id)
        hint = "The command had already finished; the input was not sent." if action.command else None
        return self._obs(
            action, "completed", content, exit_code=code, working_dir=sh.cwd, truncated=truncated,
            full_output_path=path, hint=hint,
        )

    async def _wait(self, sh: _Shell, w: _Waiter, action: CmdRun) -> CmdOutput:
        hard_s = action.timeout_s or self.default_timeout_s
        loop = asyncio.get_running_loop()
        handle = loop.call_later(hard_s, sh.expire, w) if hard_s else None
        try:
            result = await w.wait()
            if result is None:
                result = await self._hard_stop(sh, w, hard_s or 0.0)
            return result
        finally:
            if handle is not None:
                handle.cancel()
            if sh.waiter is w:
                w.cancel_timers()
                sh.waiter = None

    async def _hard_stop(self, sh: _Shell, w: _Waiter, hard_s: float) -> CmdOutput:
        """C-c, then SIGKILL the foreground group, then kill and forget the shell."""
        what = f"The command exceeded its {hard_s:g}s timeout"
        w.hard_hint = f"{what} and was interrupted with C-c."
        sh.send(KEYS["C-c"], interrupt=True)
        if (result := await w.wait(INTERRUPT_GRACE_S)) is not None:
            return result
        fg = sh.foreground()
        if fg != sh.pid:
            w.hard_hint = f"{what}; C-c did not stop it, so its process group was killed (SIGKILL)."
            sh.signal_group(fg, signal.SIGKILL)
            if (result := await w.wait(KILL_GRACE_S)) is not None:
                return result
        w.hard_hint = f"{what} and could not be stopped, so the shell was killed."
        sh.kill()
        if (result := await w.wait(KILL_GRACE_S)) is not None:
            return result
        sh.teardown(None)  # bash did not even die from SIGKILL in time: answer anyway
        return w.result or self._obs(w.action, "hard_timeout", hint=w.hard_hint)
