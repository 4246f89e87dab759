"""One interactive bash on a pseudo-terminal; completion read from a prompt sentinel.

Each shell name owns one interactive bash (``--noediting``, job control on, tty echo off) on its own
PTY. A ``PROMPT_COMMAND`` function prints a sentinel before every prompt carrying a per-shell random
token, the last exit code, ``$PWD`` and whether more typed input is still queued: bash itself runs
``read -t 0`` at the moment it prompts, which closes the race where it reads the next pasted line
before we get to look at the tty queue. A command is done when the last sentinel says nothing was
queued, the slave's input queue is empty (FIONREAD), nothing of ours is left to write and bash holds
the terminal's foreground. The master fd is read with ``loop.add_reader``; nothing polls.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
import contextlib
import fcntl
import logging
import os
import re
import shlex
import signal
import struct
import subprocess
import termios
from typing import TYPE_CHECKING

import msgspec

from protocol import CmdChunk, CmdOutput, CmdRun, CmdStatus, new_id

from ._offload import offload
from ._output import _Output

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ._shell import ShellManager


CHUNK_INTERVAL_S = 0.05
CHUNK_MAX_CHARS = 16 * 1024
INPUT_QUIET_S = 1.0
"""Quiet period for ``is_input`` when neither the action nor the session sets a soft timeout."""
INTERRUPT_GRACE_S = 2.0
KILL_GRACE_S = 1.0
CLOSE_GRACE_S = 0.5
START_TIMEOUT_S = 10.0
MAX_TYPED_BYTES = 1900
"""Larger commands are sourced from a file: a tty line holds 4095 bytes, and a write up to about
this size lands in the line discipline as one piece, which the queue check relies on."""
READ_SIZE = 65536
HOLD_MAX_CHARS = 8192
WINSIZE = struct.pack("HHHH", 50, 200, 0, 0)
KEYS = {"C-c": b"\x03", "C-d": b"\x04", "C-z": b"\x1a", "C-\\": b"\x1c"}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Emit = Callable[[CmdChunk], None]



def _take_controlling_tty() -> None:  # runs in the child between fork and exec
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _Job:
    """The command bash is running, from the write until its final sentinel."""

    __slots__ = ("command", "interrupted", "fg_pid", "script")

    def __init__(self, command: str, script: str | None) -> None:
        self.command = command
        self.interrupted = False
        self.fg_pid: int | None = None
        self.script = script


class ShellFailure(RuntimeError):
    """The executor itself failed while serving a command; the action is answered ``internal``."""


class _Waiter:
    """One action awaiting its observation: its result (or failure), wake-ups, quiet timer and chunk stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, action: CmdRun, emit: Emit | None, soft_s: float | None) -> None:
        self._loop = loop
        self.action = action
        self.emit = emit
        self.soft_s = soft_s
        self.result: CmdOutput | None = None
        self.error: ShellFailure | None = None
        self.expired = False
        self._wake: asyncio.Future[None] = loop.create_future()
        self.last_output = loop.time()
        self.soft_handle: asyncio.TimerHandle | None = None
        self.hard_hint: str | None = None
        self.seq = 0
        self.chunks: list[str] = []
        self.chunk_chars = 0
        self.flush_handle: asyncio.TimerHandle | None = None

    def cancel_timers(self) -> None:
        for handle in (self.soft_handle, self.flush_handle):
            if handle is not None:
                handle.cancel()
        self.soft_handle = self.flush_handle = None

    @property
    def answered(self) -> bool:
        return self.result is not None or self.error is not None

    def wake(self) -> None:
        if not self._wake.done():
            self._wake.set_result(None)

    async def wait(self, timeout_s: float | None = None) -> CmdOutput | None:
        """The answer, or ``None`` when woken without one (hard timeout, or ``timeout_s`` passed).

        Raises ``ShellFailure`` when the executor failed to produce the answer.
        """
        if not self.answered:
            self._wake = self._loop.create_future()
            handle = self._loop.call_later(timeout_s, self.wake) if timeout_s else None
            try:
                await self._wake
            finally:
                if handle is not None:
                    handle.cancel()
        if self.error is not None:
            raise self.error
        return self.result


class _Shell:
    """One interactive bash on a PTY, and the state of the command it runs."""

    def __init__(self, manager: ShellManager, name: str) -> None:
        self.name = name
        self._mgr = manager
        self._loop = asyncio.get_running_loop()
        token = new_id("c")[:17]
        self._prefix = f"\x1e{token}:"
        self._sentinel = re.compile(re.escape(self._prefix) + r"(\d{1,3}):([01]):(.*?):" + token + "\x1f", re.S)
        self._ps1 = f"\\036{token}:${{__corral_rc}}:${{__corral_q}}:${{PWD}}:{token}\\037"
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held_cr = False
        self._buf = ""
        self._wbuf = bytearray()
        self.cwd = manager.workdir
        self.alive = False
        self.closing = False
        self.out = _Output(manager.output_dir)
        self.job: _Job | None = None
        self.finished: tuple[int | None, str] | None = None
        """(exit code, command) of a command that ended while nobody was waiting."""
        self.waiter: _Waiter | None = None
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.exited: asyncio.Future[None] = self._loop.create_future()

    # ------------------------------------------------------------------ process

    def spawn(self) -> None:
        master, slave = os.openpty()
        try:
            attrs = termios.tcgetattr(slave)
            attrs[0] = (attrs[0] & ~(termios.IXON | termios.IXOFF)) | getattr(termios, "IUTF8", 0)
            attrs[3] &= ~(termios.ECHO | termios.ECHONL)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, WINSIZE)
            os.set_blocking(master, False)
            self._proc = subprocess.Popen(  # noqa: S603 - fork/exec only; we never block on it
                ["bash", "--norc", "--noprofile", "--noediting", "-i"],
                stdin=slave, stdout=slave, stderr=slave, cwd=self._mgr.workdir, env=self._mgr.env,
                start_new_session=True, preexec_fn=_take_controlling_tty, close_fds=True,
            )
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._baseline = attrs
        self.pid = self._proc.pid
        self._master, self._slave = master, slave
        self.alive = True
        self._loop.add_reader(master, self._on_readable)
        self._watch_exit()
        self._write(self._init_line().encode())

    def _init_line(self) -> str:
        return (
            "__corral_prompt() { __corral_rc=$?; if read -t 0; then __corral_q=1; else __corral_q=0; fi; "
            f"PS1='{self._ps1}'; PS2=; export -n PS1; return $__corral_rc; }} 2>/dev/null; PROMPT_COMMAND=__corral_prompt; "
            "unset PS0 HISTFILE; export -n PS1 PS2 PROMPT_COMMAND\n"
        )

    def _watch_exit(self) -> None:
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None
            waited = self._loop.run_in_executor(None, self._proc.wait)
            waited.add_done_callback(lambda _: self._on_exit())
            return
        self._loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        if self._proc.poll() is None:
            return
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        try:
            self.teardown(self._proc.returncode)
        finally:
            if not self.exited.done():
                self.exited.set_result(None)

    def foreground(self) -> int:
        """The terminal's foreground process group (bash's own pid when bash holds it)."""
        if not self.alive:
            return self.pid
        try:
            return os.tcgetpgrp(self._master)
        except OSError:
            return self.pid

    def signal_group(self, pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def kill(self, fg: int | None = None) -> None:
        """SIGKILL the foreground group and, while it is unreaped, bash's own group."""
        fg = self.foreground() if fg is None else fg
        if fg != self.pid:
            self.signal_group(fg, signal.SIGKILL)
        if not self.exited.done():
            self.signal_group(self.pid, signal.SIGKILL)

    async def aclose(self) -> None:
        """SIGHUP bash (it hangs up its jobs) and the foreground group, then SIGKILL every process
        group of bash's session: a bash that did not exit within the grace (a loaded machine) never
        got to hang up its background jobs, and each of those is a process group of its own."""
        self.closing = True
        if self.alive:
            fg = self.foreground()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)
            if fg != self.pid:
                self.signal_group(fg, signal.SIGHUP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), CLOSE_GRACE_S)
            for pgid in await offload.run(session_groups, self.pid):
                if pgid != self.pid:
                    self.signal_group(pgid, signal.SIGKILL)
            self.kill(fg)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), KILL_GRACE_S)
        self.teardown(None)

    # ------------------------------------------------------------------- output

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._loop.remove_reader(self._master)
            return
        try:
            self._feed(self._decoder.decode(data))
        except Exception as exc:  # a bug here must not leave the action unanswered
            self._broken(exc)

    def _broken(self, exc: Exception) -> None:
        """Reading the shell failed unexpectedly: its state cannot be trusted, so answer the
        waiting action ``internal`` and kill the shell; the next command starts a fresh one."""
        log.error("shell_reader_failed", exc_info=exc)
        w = self.waiter
        if w is not None:
            self.fail(w, ShellFailure(f"reading shell {self.name!r} failed: {exc!r}; "
                                      "the shell was killed and the next command starts a fresh one"))
        self.closing = True
        self.kill()
        self.teardown(None)

    def _feed(self, text: str) -> None:
        if self._held_cr:
            text = "\r" + text
        self._held_cr = text.endswith("\r")
        if self._held_cr:
            text = text[:-1]
        text = text.replace("\r\n", "\n")
        if self.job is not None:
            fg = self.foreground()
            if fg != self.pid:
                self.job.fg_pid = fg
        buf = self._buf + text if self._buf else text
        pos, last = 0, None
        for match in self._sentinel.finditer(buf):
            self._on_text(buf[pos : match.start()])
            pos, last = match.end(), match
        rest = buf[pos:]
        hold = self._holdback(rest)
        self._on_text(rest[: len(rest) - hold])
        self._buf = rest[len(rest) - hold :]
        if last is not None and last[2] == "0" and self._settled_now():
            self._complete(int(last[1]), last[3])

    def _holdback(self, rest: str) -> int:
        """How many trailing chars might be the start of a sentinel still arriving."""
        start = rest.rfind("\x1e")
        if start < 0:
            return 0
        tail = rest[start:]
        if len(tail) <= len(self._prefix):
            return len(tail) if self._prefix.startswith(tail) else 0
        return len(tail) if tail.startswith(self._prefix) and len(tail) < HOLD_MAX_CHARS else 0

    def _settled_now(self) -> bool:
        if self._wbuf or not self.alive:
            return False
        queued = struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        return queued == 0 and self.foreground() == self.pid

    def _on_text(self, text: str) -> None:
        if not text or not self.ready.done():
            return
        self.out.append(text)
        w = self.waiter
        if w is None:
            return
        w.last_output = self._loop.time()
        if w.emit is None:
            return
        w.chunks.append(text)
        w.chunk_chars += len(text)
        if w.chunk_chars > CHUNK_MAX_CHARS:
            self._flush_chunks(w)
        elif w.flush_handle is None:
            w.flush_handle = self._loop.call_later(CHUNK_INTERVAL_S, self._timer_flush, w)

    def _flush_chunks(self, w: _Waiter) -> None:
        if w.flush_handle is not None:
            w.flush_handle.cancel()
            w.flush_handle = None
        data, w.chunks, w.chunk_chars = "".join(w.chunks), [], 0
        if not data or w.emit is None or self.waiter is not w:
            return
        chunk = CmdChunk(id=new_id(), cause=w.action.id, session_id=self._mgr.session_id, seq=w.seq, data=data)
        w.seq += 1
        try:
            w.emit(chunk)
        except Exception as exc:
            log.error("cmd_chunk_emit_failed", exc_info=exc)
            self.fail(w, ShellFailure(
                f"could not stream the output of {_short(w.action.command)!r}: {exc!r}; the command "
                f"keeps running in shell {self.name!r} (collect it with an is_input command)"
            ))

    def _timer_flush(self, w: _Waiter) -> None:
        try:
            self._flush_chunks(w)
        except Exception as exc:  # a timer callback: nobody else would see it
            self.fail(w, ShellFailure(f"streaming the output failed: {exc!r}"))

    # ------------------------------------------------------------------- states

    def _complete(self, exit_code: int, pwd: str) -> None:
        self.cwd = pwd
        if not self.ready.done():
            self.ready.set_result(None)
            return
        job, self.job = self.job, None
        if job is None:
            return
        self._drop_script(job)
        w = self.waiter
        if w is None:
            self.finished = (exit_code, job.command)
        elif w.hard_hint is not None:
            self.settle("hard_timeout", exit_code=exit_code, pid=job.fg_pid, hint=w.hard_hint)
        else:
            self.settle("interrupted" if job.interrupted else "completed", exit_code=exit_code, pid=job.fg_pid)

    def teardown(self, returncode: int | None) -> None:
        if not self.alive and self.job is None and self.waiter is None:
            return
        if self.alive:
            try:
                self._drain()
            except Exception as exc:  # what bash printed last is lost; the answer is not
                log.error("shell_drain_failed", exc_info=exc)
            self.alive = False
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
            os.close(self._master)
            os.close(self._slave)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"bash exited while starting (status {returncode})"))
        job, self.job = self.job, None
        if job is not None:
            self._drop_script(job)
        code = returncode if returncode is not None and returncode >= 0 else None
        if job is not None and self.waiter is None:
            self.finished = (code, job.command)
        w = self.waiter
        if w is None:
            return
        why = "The shell was closed." if self.closing else self._exit_reason(returncode)
        if w.hard_hint is not None:
            self.settle("hard_timeout", exit_code=code, hint=f"{w.hard_hint} {why}")
        elif self.closing or code is None:
            self.settle("failed", exit_code=code, hint=why)
        else:
            self.settle("completed", exit_code=code, hint=why)

    @staticmethod
    def _exit_reason(returncode: int | None) -> str:
        if returncode is None:
            what = "The shell was killed."
        elif returncode < 0:
            what = f"The shell was killed by signal {-returncode}."
        else:
            what = f"The shell exited with status {returncode}."
        return f"{what} The next command starts a fresh shell (environment and directory reset)."

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while data := os.read(self._master, READ_SIZE):
                self._feed(self._decoder.decode(data))
        tail = self._decoder.decode(b"", final=True) + ("\r" if self._held_cr else "") + self._buf
        self._held_cr, self._buf = False, ""
        self._on_text(tail)

    def _drop_script(self, job: _Job) -> None:
        if job.script:
            with contextlib.suppress(OSError):
                os.unlink(job.script)

    def settle(self, status: CmdStatus, *, exit_code: int | None = None, pid: int | None = None, hint: str | None = None) -> None:
        """Answer the waiting action with the output gathered so far, and detach it."""
        w = self.waiter
        if w is None or w.answered:
            return
        if w.seq > 0:
            # Once a command has streamed, its chunks carry all of its output: flush the rest first.
            self._flush_chunks(w)
            if self.waiter is not w:  # the flush failed and answered it
                return
        self.waiter = None
        w.cancel_timers()
        out, self.out = self.out, _Output(self._mgr.output_dir)
        try:
            content, truncated, path = out.finish(w.action.id)
            if not self.alive and content.endswith("exit\n"):
                content = content[:-5]  # what interactive bash prints about its own `exit`, not the command's output
            w.result = CmdOutput(
                id=new_id(), cause=w.action.id, session_id=self._mgr.session_id, shell=self.name,
                content=content, status=status, exit_code=exit_code, working_dir=self.cwd,
                pid=pid or self.pid, truncated=truncated, full_output_path=path, hint=hint,
            )
        except Exception as exc:  # the shell is fine; only this answer is lost
            log.error("cmd_settle_failed", exc_info=exc)
            out.discard()
            w.error = ShellFailure(f"answering {_short(w.action.command)!r} failed: {exc!r}")
        w.wake()

    def fail(self, w: _Waiter, error: ShellFailure) -> None:
        """Answer ``w`` with a failure and detach it; a running command keeps running."""
        if self.waiter is w:
            self.waiter = None
        if w.answered:
            return
        w.cancel_timers()
        w.error = error
        w.wake()

    # -------------------------------------------------------------------- input

    def reset_tty(self) -> None:
        """Undo what a crashed program left behind (echo on, raw mode) before bash reads a command."""
        if not self.alive:
            return
        attrs = termios.tcgetattr(self._slave)
        wanted = termios.ICANON | termios.ISIG
        if attrs[3] & (wanted | termios.ECHO) != wanted:
            termios.tcsetattr(self._slave, termios.TCSANOW, self._baseline)

    def begin(self, command: str, typed: str) -> None:
        """Start a command: the text is typed as is, or sourced from a file when too long for a tty."""
        self.finished = None
        script = None
        data = typed.encode()
        if len(data) > MAX_TYPED_BYTES:
            script = os.path.join(self._mgr.scratch_dir(), f"{new_id()}.sh")
            with open(script, "wb") as f:
                f.write(data)
            data = f". {shlex.quote(script)}".encode()
        self.job = _Job(command, script)
        self.reset_tty()
        self._write(data + b"\n")

    def send(self, data: bytes, *, interrupt: bool = False) -> None:
        if interrupt:
            self._wbuf.clear()
        self._write(data)

    def _write(self, data: bytes) -> None:
        if not self.alive:
            return
        if self._wbuf:
            self._wbuf += data
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written < len(data):
            self._wbuf += data[written:]
            self._loop.add_writer(self._master, self._on_writable)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._master, self._wbuf)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._wbuf)
        del self._wbuf[:written]
        if not self._wbuf:
            self._loop.remove_writer(self._master)

    # ------------------------------------------------------------------ waiting

    def attach(self, action: CmdRun, emit: Emit | None, soft_s: float | None) -> _Waiter:
        w = _Waiter(self._loop, action, emit, soft_s)
        self.waiter = w
        if soft_s:
            w.soft_handle = self._loop.call_later(soft_s, self._soft_check, w)
        return w

    def _soft_check(self, w: _Waiter) -> None:
        try:
            self._soft_check_now(w)
        except Exception as exc:  # a timer callback: nobody else would see it
            self.fail(w, ShellFailure(f"checking a quiet command failed: {exc!r}"))

    def _soft_check_now(self, w: _Waiter) -> None:
        if self.waiter is not w or w.soft_s is None:
            return
        remaining = w.last_output + w.soft_s - self._loop.time()
        if remaining > 0.001:
            w.soft_handle = self._loop.call_later(remaining, self._soft_check, w)
            return
        fg = self.foreground()
        if self.job is not None and fg != self.pid:
            self.job.fg_pid = fg
        hint = (
            f"The command is still running (no new output for {w.soft_s:g}s). Send more input with "
            "is_input=true, send an empty command with is_input=true to wait for more output, or send "
            "C-c with is_input=true to interrupt it."
        )
        self.settle("running", pid=self.job.fg_pid if self.job else None, hint=hint)

    def expire(self, w: _Waiter) -> None:
        """The hard timeout passed: wake the waiting action without answering it."""
        if self.waiter is w and not w.answered:
            w.cancel_timers()
            w.soft_s = None
            w.expired = True
            w.wake()


def _short(command: str, limit: int = 80) -> str:
    command = command.strip()
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _with_hint(result: CmdOutput, hint: str) -> CmdOutput:
    return msgspec.structs.replace(result, hint=hint)


def session_groups(sid: int) -> set[int]:
    """The process groups of every process in session ``sid`` (a shell and the jobs it started;
    a process that called ``setsid`` has left it). Reads /proc: run it off the event loop."""
    groups: set[int] = set()
    with contextlib.suppress(OSError):
        entries = os.listdir("/proc")
        for name in entries:
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 3 and int(fields[3]) == sid:  # state, ppid, pgrp, session
                groups.add(int(fields[2]))
    return groups
