"""The ``jupyter`` plugin: IPython kernels inside the sandbox, started on the first cell.

Each kernel name is one ipykernel process, spawned by the executor (so it runs as the sandbox's
user, under its limits, seeing what the sandbox sees) and driven over ZeroMQ with
jupyter_client's asyncio client. Nothing is imported or started until the first ``ipython_run``:
a sandbox that declared the plugin and never runs a cell pays nothing for it.

A cell's answer is its stdout, stderr, results and display text in the order the kernel sent
them (ANSI codes stripped, bounded like a command's output), its PNG displays, and the kernel's
working directory after it. Before a cell the kernel moves to the main shell's directory if
the shell moved since the last cell (bash leads, the kernel follows). A cell past its
``timeout_s`` is interrupted and answers ``hard_timeout`` with what it printed; the kernel keeps its
state. A kernel that died is answered ``failed`` and started afresh; the next cell says
``kernel_restarted``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from protocol import AnyAction, AnyObservation, CmdChunk, Error, IPythonOutput, IPythonRun, codes, new_id

from ._output import _Output
from .plugins import Emit, PluginUnavailable, SandboxPlugin

START_TIMEOUT_S = 60.0
INTERRUPT_GRACE_S = 5.0
POLL_S = 0.5
"""How often a waiting cell checks that its kernel still lives."""
IMAGES_CAP_BYTES = 600_000
"""Base64 PNG bytes one answer carries (an answer must fit in one broker message)."""
KERNEL_OPTIONS = ("--HistoryManager.hist_file=:memory:",)
"""IPython's history (``In``, ``Out``, ``%history``) kept in memory: the on-disk sqlite file costs
~3 ms per cell, and a sandbox's kernels need no history across restarts."""
CHUNK_CHARS = 16_384
NO_OUTPUT = "[Code executed successfully with no output]"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_CWD_EXPRESSION = "__import__('os').getcwd()"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class JupyterPlugin(SandboxPlugin):
    """``ipython_run``: one ipykernel process per kernel name, driven with jupyter_client."""

    kinds = frozenset({"ipython_run"})
    variant = "jupyter"
    modules = ("ipykernel", "jupyter_client")

    @classmethod
    def lane_for(cls, action: AnyAction) -> str | None:
        return f"ipython:{action.kernel}" if isinstance(action, IPythonRun) else None

    async def start(self) -> None:
        self._kernels: dict[str, _Kernel] = {}
        self._dir = tempfile.mkdtemp(prefix="corral-kernels-")

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        assert isinstance(action, IPythonRun)
        kernel = self._kernels.get(action.kernel)
        if kernel is None:
            kernel = self._kernels[action.kernel] = _Kernel(action.kernel, self)
        try:
            return await kernel.run(action, emit)
        except PluginUnavailable as exc:
            return Error(id=new_id(), cause=action.id, session_id=self.ctx.session_id,
                         code=codes.PLUGIN_UNAVAILABLE, message=str(exc))
        except KernelStartFailed as exc:
            return Error(id=new_id(), cause=action.id, session_id=self.ctx.session_id,
                         code=codes.SANDBOX_FAILED, message=str(exc))

    async def aclose(self) -> None:
        kernels, self._kernels = list(self._kernels.values()), {}
        await asyncio.gather(*(k.stop() for k in kernels), return_exceptions=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def kernel_env(self) -> dict[str, str]:
        """The session's environment for a new kernel: the shells' own, plus what the main shell
        exports now (when it is idle; a busy shell cannot be asked)."""
        env = dict(self.ctx.shells.env)
        for name, value in os.environ.items():  # where the image puts IPython's and Jupyter's files
            if name == "IPYTHONDIR" or name.startswith("JUPYTER_"):
                env.setdefault(name, value)
        env.update(await self.ctx.shells.exported(timeout_s=2.0))
        env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        env["CORRAL_EDITOR_HISTORY_DIR"] = self.ctx.editor_history_dir
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        return env


class AgentSkillsPlugin(SandboxPlugin):
    """``agent_skills``: the ``corral_skills`` helpers, imported into every kernel of the session."""

    requires = ("jupyter",)
    variant = "agent_skills"
    modules = ("corral_skills", "pypdf", "docx", "pptx", "pylatexenc")

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        raise AssertionError("agent_skills answers no action kind of its own")


class KernelStartFailed(Exception):
    pass


class KernelDied(Exception):
    pass


class _Kernel:
    """One named kernel: its process, its client, and the directory it last followed bash to."""

    def __init__(self, name: str, plugin: JupyterPlugin) -> None:
        self.name = name
        self._plugin = plugin
        self._proc: asyncio.subprocess.Process | None = None
        self._kc: Any = None
        self._followed: str | None = None
        self._restarted = False
        """The next answer says ``kernel_restarted`` (the previous kernel died or was restarted)."""
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def _start(self) -> None:
        """Launch ``ipykernel_launcher`` at once, import the client meanwhile (off the loop), then
        wait until the kernel answers, or its process ends, whichever comes first."""
        ctx = self._plugin.ctx
        base = os.path.join(self._plugin._dir, f"{_safe(self.name)}-{new_id()[:8]}")
        connection = _write_connection_file(base)
        cwd = ctx.shells.cwd()
        env = await self._plugin.kernel_env()
        with open(base + ".log", "wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *_launcher(), "-f", connection, *KERNEL_OPTIONS, cwd=cwd, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            client_class = await asyncio.to_thread(_client_class)
            kc = client_class(connection_file=connection)
            kc.load_connection_file()
            kc.start_channels(hb=False)  # liveness is our child's exit status, not heartbeats that lag under load
            ready = asyncio.ensure_future(_wait_ready(kc, time.monotonic() + START_TIMEOUT_S))
            ended = asyncio.ensure_future(self._proc.wait())
            await asyncio.wait({ready, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                kc.stop_channels()
                raise KernelStartFailed(f"{await self.death()} while starting: {_tail(base + '.log')}")
            ended.cancel()
            ready.result()
        except BaseException:
            await self.stop()
            raise
        self._kc, self._followed = kc, cwd
        if "agent_skills" in ctx.plugins:
            reply = await self._silent("from corral_skills import *")
            if reply.get("status") != "ok":
                await self.stop()
                raise PluginUnavailable("agent_skills", f"an importable corral_skills ({reply.get('ename')}: "
                                        f"{reply.get('evalue')})", "agent_skills")

    async def stop(self) -> None:
        """Stop the kernel and everything it started (its own process group)."""
        kc, proc, self._kc, self._proc = self._kc, self._proc, None, None
        if kc is not None:
            kc.stop_channels()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def interrupt(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGINT)  # ipykernel turns SIGINT into KeyboardInterrupt

    async def alive(self) -> bool:
        """Is the kernel's process running? (A zombie the loop has not reaped yet is dead too.)"""
        return self._proc is not None and self._proc.returncode is None and not _exited(self._proc.pid)

    async def death(self) -> str:
        """Why the kernel is gone, as its process says (given the loop a moment to reap it)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 2.0)
        code = self._proc.returncode if self._proc is not None else None
        if code is None:
            return "the kernel died"
        return f"the kernel died (killed by signal {-code})" if code < 0 else f"the kernel died (exit code {code})"

    # ----------------------------------------------------------------------- cells
    async def run(self, action: IPythonRun, emit: Emit) -> IPythonOutput:
        async with self._lock:
            if action.restart and self._proc is not None:
                await self.stop()
                self._restarted = True
            if self._proc is not None and not await self.alive():
                await self.stop()  # died between cells (killed from bash, say)
                self._restarted = True
            if self._proc is None:
                await self._start()
            restarted, self._restarted = self._restarted, False
            if not action.code.strip():
                return self._answer(action, content="[Kernel restarted]" if restarted else NO_OUTPUT,
                                    kernel_restarted=restarted)
            await self._follow_bash()
            return await self._execute(action, emit, restarted)

    async def _follow_bash(self) -> None:
        cwd = self._plugin.ctx.shells.cwd()
        if cwd != self._followed:
            await self._silent(f"import os as __corral_os; __corral_os.chdir({cwd!r}); del __corral_os")
            self._followed = cwd

    async def _silent(self, code: str) -> dict[str, Any]:
        msg_id = self._kc.execute(code, silent=True, store_history=False)
        return await self._reply(msg_id, time.monotonic() + 10)

    async def _execute(self, action: IPythonRun, emit: Emit, restarted: bool) -> IPythonOutput:
        timeout_s = action.timeout_s or self._plugin.ctx.shells.default_timeout_s
        deadline = time.monotonic() + timeout_s if timeout_s else None
        cell = _Cell(self._plugin, action, emit)
        msg_id = self._kc.execute(action.code, store_history=True, allow_stdin=False,
                                  user_expressions={"cwd": _CWD_EXPRESSION})
        try:
            timed_out = await cell.collect(self._kc, msg_id, deadline, self)
            if timed_out:
                self.interrupt()
                if await cell.collect(self._kc, msg_id, time.monotonic() + INTERRUPT_GRACE_S, self):
                    await self._lose()
                    return cell.answer("hard_timeout", kernel_restarted=restarted,
                                       reason=f"interrupted after {timeout_s:g}s; it did not stop, so the kernel was restarted")
                await _quietly(self._reply(msg_id, time.monotonic() + 2))
                return cell.answer("hard_timeout", kernel_restarted=restarted, reason=f"interrupted after {timeout_s:g}s")
            reply = await self._reply(msg_id, time.monotonic() + 10)
        except KernelDied as exc:
            await self._lose()
            return cell.answer("failed", kernel_restarted=restarted,
                               reason=f"{exc}; the next cell runs in a fresh kernel")
        self._followed = _cwd(reply) or self._followed
        return cell.answer(_status(reply, cell), kernel_restarted=restarted,
                           execution_count=reply.get("execution_count"), working_dir=self._followed)

    async def _lose(self) -> None:
        """Drop this kernel; the next cell starts a fresh one and says so."""
        await self.stop()
        self._restarted = True

    async def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            try:
                msg = await self._kc.get_shell_msg(timeout=max(0.01, min(POLL_S, deadline - time.monotonic())))
            except queue.Empty:
                if not await self.alive():
                    raise KernelDied(await self.death()) from None
                if time.monotonic() >= deadline:
                    raise KernelDied("the kernel stopped answering") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]

    def _answer(self, action: IPythonRun, **fields: Any) -> IPythonOutput:
        return IPythonOutput(id=new_id(), cause=action.id, session_id=self._plugin.ctx.session_id,
                             kernel=self.name, **fields)


class _Cell:
    """What one cell sent on iopub, in order, bounded."""

    def __init__(self, plugin: JupyterPlugin, action: IPythonRun, emit: Emit) -> None:
        self._action = action
        self._emit = emit
        self._session_id = plugin.ctx.session_id
        self._out = _Output(plugin.ctx.output_dir)
        self._seq = 0
        self._images: list[str] = []
        self._image_bytes = 0
        self.error: dict[str, Any] | None = None

    async def collect(self, kc: Any, msg_id: str, deadline: float | None, kernel: _Kernel) -> bool:
        """Read iopub until the kernel is idle again after this cell; True if the deadline came first."""
        while True:
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return True
            try:
                msg = await kc.get_iopub_msg(timeout=wait)
            except queue.Empty:
                if not await kernel.alive():
                    raise KernelDied(await kernel.death()) from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                return False
            self._take(kind, content)

    def _take(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "stream":
            self._text(content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = content.get("data", {})
            png = data.get("image/png")
            if isinstance(png, str):
                self._image(png)
            elif "text/plain" in data:
                self._text(str(data["text/plain"]) + "\n")
        elif kind == "error":
            self.error = content
            self._text("\n".join(content.get("traceback", [])) + "\n")

    def _text(self, text: str) -> None:
        text = strip_ansi(text).replace("\r\n", "\n")
        if not text:
            return
        self._out.append(text)
        for start in range(0, len(text), CHUNK_CHARS):  # the channel carries bounded chunks
            self._seq += 1
            self._emit(CmdChunk(id=new_id(), cause=self._action.id, session_id=self._session_id, seq=self._seq,
                                data=text[start:start + CHUNK_CHARS]))

    def _image(self, png: str) -> None:
        png = png.strip()
        if self._image_bytes + len(png) > IMAGES_CAP_BYTES:
            self._text(f"[image/png of {len(png)} base64 bytes not returned: an answer carries at most "
                       f"{IMAGES_CAP_BYTES} bytes of images; save it to a file instead]\n")
            return
        self._images.append(png)
        self._image_bytes += len(png)

    def answer(self, status: str, **fields: Any) -> IPythonOutput:
        content, truncated, path = self._out.finish(self._action.id)
        error = self.error or {}
        return IPythonOutput(
            id=new_id(), cause=self._action.id, session_id=self._session_id, kernel=self._action.kernel,
            content=content if content.strip() or error else NO_OUTPUT, status=status,  # type: ignore[arg-type]
            truncated=truncated, full_output_path=path, images=self._images,
            error_name=error.get("ename"), error_value=error.get("evalue"),
            traceback=strip_ansi("\n".join(error.get("traceback", []))) if error else None, **fields)


def _status(reply: dict[str, Any], cell: _Cell) -> str:
    if reply.get("status") == "ok":
        return "completed"
    if (reply.get("ename") or (cell.error or {}).get("ename")) == "KeyboardInterrupt":
        return "interrupted"
    return "error"


def _cwd(reply: dict[str, Any]) -> str | None:
    value = reply.get("user_expressions", {}).get("cwd", {})
    try:
        cwd = ast.literal_eval(value["data"]["text/plain"]) if value.get("status") == "ok" else None
    except (KeyError, ValueError, SyntaxError):
        return None
    return cwd if isinstance(cwd, str) else None


async def _wait_ready(kc: Any, deadline: float) -> None:
    """Until the kernel answers ``kernel_info`` on its shell socket and its iopub socket carries
    messages to us (a subscriber joins late: the first messages of a new connection can be lost)."""
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the kernel did not answer within {START_TIMEOUT_S:g}s")
        msg_id = kc.kernel_info()
        try:
            reply = await kc.get_shell_msg(timeout=1.0)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") != msg_id:
            continue
        try:  # the kernel_info request's own busy/idle status on iopub proves the subscription
            while True:
                msg = await kc.get_iopub_msg(timeout=0.5)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                        and msg["content"].get("execution_state") == "idle":
                    return
        except queue.Empty:
            continue


def _launcher() -> list[str]:
    """How to start ``ipykernel_launcher``: from this interpreter's site-packages, or, for an
    executor that runs isolated from them (``-I -S`` from a bubblewrap sandbox's runtime copy), from
    the directory this package was copied to, which carries the kernel's packages too. That
    directory goes on the kernel's own ``sys.path``, not on ``PYTHONPATH``, so a ``!python3`` or
    ``!pip`` in a cell sees the sandbox's Python as it is, without the runtime."""
    if not sys.flags.isolated:
        return [sys.executable, "-m", "ipykernel_launcher"]
    runtime = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = (f"import runpy, sys; sys.path[0] = {runtime!r}; "  # in place of -c's '' (ipykernel adds the cwd later)
            "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", boot]


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _client_class() -> type:
    try:
        from jupyter_client.asynchronous import AsyncKernelClient
    except ImportError as exc:
        raise PluginUnavailable("jupyter", "the Python module 'jupyter_client'", "jupyter") from exc
    return AsyncKernelClient


def _write_connection_file(base: str) -> str:
    """A kernel's connection file: IPC sockets next to it (in the plugin's private directory, so
    nothing else on the host can reach the kernel), a fresh signing key."""
    info = {"transport": "ipc", "ip": base, "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
            "hb_port": 5, "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
    path = base + ".json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    return path


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace").strip() or "(it printed nothing)"
    except OSError as exc:
        return f"(its log could not be read: {exc})"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "kernel"


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - tearing down what may already be gone
        pass
