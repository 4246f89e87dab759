"""SWE-ReX on corral: ``CorralDeployment`` / ``CorralDeploymentConfig`` and ``CorralRuntime``.

The switch is the deployment: ``CorralDeployment(backend="docker", image=...)`` where SWE-ReX code
had ``DockerDeployment(image=...)``; ``deployment.runtime`` is a ``CorralRuntime``, an
``AbstractRuntime`` whose behaviour (outputs, exit codes, which SWE-ReX exception is raised where)
follows SWE-ReX's own ``LocalRuntime``.

Mapping:
  * a SWE-ReX bash session is a corral named shell of the same name (``CmdRun.shell``);
  * ``BashAction.timeout`` is the action's hard timeout: corral stops the command (C-c, then
    SIGKILL of its process group) and ``CommandTimeoutError`` is raised. SWE-ReX's LocalRuntime
    leaves a timed-out command running until a ``BashInterruptAction``; SWE-agent sends one after
    every timeout, which then finds nothing left to interrupt;
  * interactive commands (``is_interactive_command`` / ``is_interactive_quit`` / ``expect``) run
    with a short soft timeout: the program keeps running while corral answers ``running`` once it
    has been quiet for ``INTERACTIVE_QUIET_S``, and its output is matched against ``expect``;
  * ``execute`` runs in a pool of corral shells of its own (one per concurrent call), in a
    subshell with stdin from /dev/null and stdout/stderr captured byte-exact (base64);
  * ``upload`` of a directory is one tar.gz written in parts and extracted with one command.

Every coroutine of ``CorralRuntime`` may be awaited from any event loop: the corral connection
lives on a loop thread of its own, because SWE-agent calls each runtime method in its own
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import io
import logging
import shlex
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Awaitable, Literal, TypeVar

import msgspec
import pexpect
import structlog
from pydantic import BaseModel, ConfigDict, model_validator
from swerex.deployment.abstract import AbstractDeployment
from swerex.deployment.hooks.abstract import CombinedDeploymentHook, DeploymentHook
from swerex.exceptions import (
    CommandTimeoutError,
    DeploymentNotStartedError,
    NoExitCodeError,
    NonZeroExitCodeError,
    SessionDoesNotExistError,
    SessionExistsError,
    SwerexException,
)
from swerex.runtime.abstract import (
    AbstractRuntime,
    Action,
    BashAction,
    BashInterruptAction,
    BashObservation,
    CloseBashSessionResponse,
    CloseResponse,
    CloseSessionRequest,
    CloseSessionResponse,
    Command,
    CommandResponse,
    CreateBashSessionRequest,
    CreateBashSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    IsAliveResponse,
    Observation,
    ReadFileRequest,
    ReadFileResponse,
    UploadRequest,
    UploadResponse,
    WriteFileRequest,
    WriteFileResponse,
)

from protocol import AnyAction, AnyObservation, Client, CmdOutput, CmdRun, Error, FileContent, FileRead, FileWrite, Session, SessionSpec, codes, new_id

from ._session import LoopThread, resolve_nats_url, session_spec
from ._swerex_rules import (
    CorralActionError,
    KILL_JOB,
    PS1,
    apply_check,
    check_bash_command,
    exec_script,
    file_error,
    first_match,
    quiet_s,
    tar_gz,
    timeout_message,
)

__all__ = ["CorralDeployment", "CorralDeploymentConfig", "CorralRuntime", "CorralActionError"]

log = structlog.get_logger()
T = TypeVar("T")

PART_BYTES = 480_000
"""File contents travel in parts of this many bytes (base64: 640 kB, under NATS' 1 MB payload)."""
ALIVE_STATUSES = ("ready", "recovered")

class _Link:
    """The corral connection and session, on a loop thread of their own."""

    def __init__(self, loop: LoopThread, client: Client, session: Session, owned: bool) -> None:
        self.loop, self.client, self.session, self.owned = loop, client, session, owned

    async def call(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the link's loop, awaited from whichever loop the caller runs."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop.loop)  # type: ignore[arg-type]
        return await asyncio.wrap_future(fut)

    async def run(self, action: AnyAction) -> AnyObservation:
        return await self.call(self.session.run(action))


class _Shell:
    """What the runtime knows of one SWE-ReX session's corral shell."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.busy = False
        """A program is still running in it (an interactive one, or one that outlived a wait)."""


class CorralRuntime(AbstractRuntime):
    """An ``AbstractRuntime`` whose commands run in a corral session.

    ``await CorralRuntime.start(nats_url, backend=..., image=..., resources=..., env=...)`` creates
    the session (and closes it in ``close()``); ``await CorralRuntime.attach(session_id, nats_url)``
    drives an existing one (``close()`` then leaves it running)."""

    def __init__(self, link: _Link, *, logger: logging.Logger | None = None) -> None:
        self._link = link
        self._shells: dict[str, _Shell] = {}
        self._exec_free: list[str] = []
        self._exec_count = 0
        self._closed = False
        self.logger = logger or logging.getLogger("corral.swerex")

    @classmethod
    async def start(cls, nats_url: str | None = None, *, creds: str | None = None, spec: SessionSpec | None = None,
                    logger: logging.Logger | None = None, **fields: Any) -> CorralRuntime:
        spec = spec or session_spec(**fields)
        return cls(await _open(resolve_nats_url(nats_url), creds, spec, None), logger=logger)

    @classmethod
    async def attach(cls, session_id: str, nats_url: str | None = None, *, creds: str | None = None,
                     logger: logging.Logger | None = None) -> CorralRuntime:
        return cls(await _open(resolve_nats_url(nats_url), creds, None, session_id), logger=logger)

    @property
    def session_id(self) -> str:
        return self._link.session.session_id

    @property
    def session(self) -> Session:
        """The corral session (its coroutines run on the runtime's own loop: see ``_Link.call``)."""
        return self._link.session

    # ------------------------------------------------------------------ lifecycle

    async def is_alive(self, *, timeout: float | None = None) -> IsAliveResponse:
        if self._closed:
            return IsAliveResponse(is_alive=False, message="the runtime is closed")
        try:
            info = await asyncio.wait_for(self._link.call(self._link.client.get_session(self.session_id)), timeout)
        except Exception as exc:  # noqa: BLE001 - is_alive reports, it does not raise
            return IsAliveResponse(is_alive=False, message=f"corral session {self.session_id}: {exc!r}")
        if info.status in ALIVE_STATUSES:
            return IsAliveResponse(is_alive=True)
        return IsAliveResponse(is_alive=False, message=f"corral session {self.session_id} is {info.status}: {info.reason or ''}")

    async def close(self) -> CloseResponse:
        """Close the corral session (when this runtime created it) and the connection; idempotent."""
        if self._closed:
            return CloseResponse()
        self._closed = True
        link = self._link
        try:
            if link.owned:
                await link.call(link.session.close())
            else:
                await link.call(link.session.detach())
        finally:
            try:
                await link.call(link.client.aclose())
            finally:
                await asyncio.to_thread(link.loop.close)
        log.info("swerex_runtime_closed", session_id=self.session_id)
        return CloseResponse()

    # ------------------------------------------------------------------ bash sessions

    async def create_session(self, request: CreateSessionRequest) -> CreateSessionResponse:
        if request.session in self._shells:
            raise SessionExistsError(f"session {request.session} already exists")
        if not isinstance(request, CreateBashSessionRequest):
            raise ValueError(f"unknown session type: {request!r}")
        shell = self._shells[request.session] = _Shell(request.session)
        command = " ; ".join([f"source {path}" for path in request.startup_source]) or ":"
        timeout = request.startup_timeout if request.startup_source else None
        obs = await self._cmd(CmdRun(id=new_id(), command=command, shell=shell.name, timeout_s=timeout))
        if obs.status == "hard_timeout":
            raise pexpect.TIMEOUT(f"timeout after {request.startup_timeout} seconds while starting session {request.session!r}")
        return CreateBashSessionResponse(output=obs.content)

    async def run_in_session(self, action: Action) -> Observation:
        shell = self._shells.get(action.session)
        if shell is None:
            raise SessionDoesNotExistError(f"session {action.session!r} does not exist")
        if isinstance(action, BashInterruptAction):
            return await self._interrupt(shell, action)
        if action.is_interactive_command or action.is_interactive_quit or action.expect or shell.busy:
            return await self._interactive(shell, action)
        await check_bash_command(action.command)
        deadline = None if action.timeout is None else time.monotonic() + action.timeout
        obs = await self._cmd(CmdRun(id=new_id(), command=action.command, shell=shell.name, timeout_s=action.timeout))
        content = await self._whole(obs)
        while obs.status == "running":  # the session's own soft timeout: keep waiting to the deadline
            shell.busy = True
            if deadline is not None and time.monotonic() >= deadline:
                raise CommandTimeoutError(timeout_message(action))
            obs = await self._cmd(CmdRun(id=new_id(), command="", is_input=True, shell=shell.name,
                                         timeout_s=None if deadline is None else max(deadline - time.monotonic(), 0.01)))
            content += await self._whole(obs)
        shell.busy = False
        if obs.status == "hard_timeout":
            raise CommandTimeoutError(timeout_message(action))
        return apply_check(action, content, obs.exit_code if obs.status in ("completed", "interrupted") else None)

    async def close_session(self, request: CloseSessionRequest) -> CloseSessionResponse:
        shell = self._shells.get(request.session)
        if shell is None:
            raise SessionDoesNotExistError(f"session {request.session!r} does not exist")
        if shell.busy:
            try:
                await self._interrupt(shell, BashInterruptAction(session=request.session))
            except pexpect.TIMEOUT:
                pass  # `exit` below is answered not_executed; the shell goes with the sandbox
        await self._cmd(CmdRun(id=new_id(), command="exit", shell=shell.name))
        del self._shells[request.session]
        return CloseBashSessionResponse()

    async def _interactive(self, shell: _Shell, action: BashAction) -> BashObservation:
        """Send a line to a running program (or start one) and read until ``expect`` or the prompt."""
        deadline = None if action.timeout is None else time.monotonic() + action.timeout
        line = action.command.rstrip("\n")
        obs = await self._cmd(CmdRun(id=new_id(), command=line, shell=shell.name, is_input=shell.busy,
                                     soft_timeout_s=quiet_s(deadline)))
        text, matched = "", ""
        while True:
            text += obs.content
            if obs.status != "running":
                shell.busy = False
                matched = PS1
                break
            shell.busy = True
            found = first_match(text, action.expect)
            if found is not None:
                text, matched = text[:found[0]], found[1]
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise CommandTimeoutError(timeout_message(action))
            obs = await self._cmd(CmdRun(id=new_id(), command="", is_input=True, shell=shell.name,
                                         soft_timeout_s=quiet_s(deadline)))
        if action.is_interactive_command:
            text = text.lstrip().removeprefix(line).strip()
        if action.is_interactive_command or action.is_interactive_quit:
            return BashObservation(output=text, exit_code=0, expect_string=matched)
        exit_code = obs.exit_code if matched == PS1 else None
        if exit_code is None and action.check == "raise":
            raise NoExitCodeError(f"no exit code for {action.command!r}: it matched {matched!r} and is still running")
        return apply_check(action, text, exit_code, expect_string=matched)

    async def _interrupt(self, shell: _Shell, action: BashInterruptAction) -> BashObservation:
        if not shell.busy:
            return BashObservation(output="", exit_code=0, expect_string=PS1)
        output = ""
        for _ in range(action.n_retry):
            obs = await self._cmd(CmdRun(id=new_id(), command="C-c", is_input=True, shell=shell.name,
                                         soft_timeout_s=action.timeout))
            output += obs.content
            matched = PS1 if obs.status != "running" else (first_match(output, action.expect) or (0, ""))[1]
            if matched:
                shell.busy = obs.status == "running"
                return BashObservation(output=output.strip(), exit_code=0, expect_string=matched)
        # C-c did not stop it: stop it and kill the job, as LocalRuntime does
        obs = await self._cmd(CmdRun(id=new_id(), command="C-z", is_input=True, shell=shell.name,
                                     soft_timeout_s=action.timeout))
        output += obs.content
        if obs.status == "running":
            raise pexpect.TIMEOUT("Failed to interrupt session")
        shell.busy = False
        obs = await self._cmd(CmdRun(id=new_id(), command=KILL_JOB, shell=shell.name, timeout_s=max(action.timeout, 5.0)))
        return BashObservation(output=(output + obs.content).strip(), exit_code=0, expect_string=PS1)

    # ------------------------------------------------------------------ one-shot commands and files

    async def execute(self, command: Command) -> CommandResponse:
        shell = self._exec_free.pop() if self._exec_free else self._new_exec_shell()
        try:
            return await self._execute_in(shell, command)
        finally:
            self._exec_free.append(shell)

    def _new_exec_shell(self) -> str:
        self._exec_count += 1
        return f"swerex-exec-{self._exec_count}"

    async def _execute_in(self, shell: str, command: Command) -> CommandResponse:
        obs = await self._cmd(CmdRun(id=new_id(), command=exec_script(shell, command), shell=shell, timeout_s=command.timeout))
        if obs.status == "hard_timeout":
            raise CommandTimeoutError(f"Timeout ({command.timeout}s) exceeded while running command")
        lines = obs.content.split("\n")
        if obs.status != "completed" or len(lines) < 6 or not lines[0].isdigit():
            raise CorralActionError(codes.INTERNAL, f"execute in shell {shell!r} answered {obs.status}: {obs.content[-2000:]!r}")
        exit_code, why, where = int(lines[0]), lines[1], lines[2]
        if why == "nocwd":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", command.cwd)
        if why == "noexe":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", command.command[0] if isinstance(command.command, list) else command.command)
        if where == "inline":
            out, err = base64.b64decode(lines[3]), base64.b64decode(lines[4])
        else:
            out, err = await asyncio.gather(self._read_bytes(f"{where}/o"), self._read_bytes(f"{where}/e"))
        r = CommandResponse(stdout=out.decode(errors="backslashreplace"),
                            stderr="" if command.merge_output_streams else err.decode(errors="backslashreplace"),
                            exit_code=exit_code)
        if command.check and exit_code != 0:
            msg = (f"Command {command.command!r} failed with exit code {exit_code}. "
                   f"Stdout:\n{r.stdout!r}\nStderr:\n{r.stderr!r}")
            raise NonZeroExitCodeError(f"{command.error_msg}: {msg}" if command.error_msg else msg)
        return r

    async def read_file(self, request: ReadFileRequest) -> ReadFileResponse:
        data = await self._read_bytes(request.path)
        # what Path.read_text does with the bytes: decode, then translate newlines
        text = io.TextIOWrapper(io.BytesIO(data), encoding=request.encoding or "utf-8", errors=request.errors).read()
        return ReadFileResponse(content=text)

    async def write_file(self, request: WriteFileRequest) -> WriteFileResponse:
        await self._write_bytes(request.path, request.content.encode())
        return WriteFileResponse()

    async def upload(self, request: UploadRequest) -> UploadResponse:
        """A file is written in parts; a directory travels as one tar.gz, extracted into the target
        (created if missing, merged if it exists, as SWE-ReX's server does)."""
        source = Path(request.source_path).resolve()
        if source.is_file():
            await self._write_bytes(request.target_path, await asyncio.to_thread(source.read_bytes))
            return UploadResponse()
        if not source.is_dir():
            raise ValueError(f"Source path {source} is not a file or directory")
        archive = await asyncio.to_thread(tar_gz, source)
        target = request.target_path.rstrip("/") or "/"
        staging = f"{target}.corral-upload-{new_id()[:12]}.tgz"
        await self._write_bytes(staging, archive)
        script = (f"mkdir -p -- {shlex.quote(target)} && tar -xzf {shlex.quote(staging)} -C {shlex.quote(target)} "
                  f"--no-same-owner; __swx_rc=$?; rm -f -- {shlex.quote(staging)}; echo $__swx_rc")
        shell = self._exec_free.pop() if self._exec_free else self._new_exec_shell()
        try:
            obs = await self._cmd(CmdRun(id=new_id(), command=script, shell=shell))
        finally:
            self._exec_free.append(shell)
        if obs.status != "completed" or obs.content.strip().rsplit("\n", 1)[-1] != "0":
            raise SwerexException(f"extracting the upload into {target} failed: {obs.content[-2000:]}")
        log.info("swerex_upload", session_id=self.session_id, target=target, bytes=len(archive))
        return UploadResponse()

    # ------------------------------------------------------------------ helpers

    async def _cmd(self, action: CmdRun) -> CmdOutput:
        obs = await self._link.run(action)
        if isinstance(obs, Error):
            raise CorralActionError(obs.code, obs.message)
        assert isinstance(obs, CmdOutput), obs
        return obs

    async def _whole(self, obs: CmdOutput) -> str:
        """All of a command's output: corral caps an answer's content (head and tail) and keeps the
        whole in a file of the sandbox; LocalRuntime returns everything."""
        if not obs.truncated or not obs.full_output_path:
            return obs.content
        return (await self._read_bytes(obs.full_output_path)).decode(errors="backslashreplace")

    async def _read_bytes(self, path: str) -> bytes:
        obs = await self._link.run(FileRead(id=new_id(), path=path, encoding="base64"))
        if isinstance(obs, FileContent):
            return base64.b64decode(obs.content)
        assert isinstance(obs, Error), obs
        if obs.code != codes.FILE_TOO_LARGE:
            raise file_error(obs, path)
        # too big for one answer: split it in the sandbox and read the parts
        listing = await self._cmd(CmdRun(id=new_id(), shell="swerex-files", command=(
            f"__swx_d=$(mktemp -d) && split -b {PART_BYTES} -a 6 -- {shlex.quote(path)} \"$__swx_d/p\" "
            "&& echo \"$__swx_d\" && ls \"$__swx_d\"")))
        names = listing.content.split()
        if listing.exit_code != 0 or not names:
            raise CorralActionError(codes.INTERNAL, f"could not split {path} into parts: {listing.content[-2000:]}")
        parts = await asyncio.gather(*(self._read_bytes(f"{names[0]}/{name}") for name in names[1:]))
        await self._cmd(CmdRun(id=new_id(), shell="swerex-files", command=f"rm -rf -- {shlex.quote(names[0])}"))
        return b"".join(parts)

    async def _write_bytes(self, path: str, data: bytes) -> None:
        for offset in range(0, max(len(data), 1), PART_BYTES):
            part = base64.b64encode(data[offset:offset + PART_BYTES]).decode()
            obs = await self._link.run(FileWrite(id=new_id(), path=path, content=part, encoding="base64", append=offset > 0))
            if isinstance(obs, Error):
                raise file_error(obs, path)


# ---------------------------------------------------------------------- deployment


class CorralDeploymentConfig(BaseModel):
    """``CorralDeployment``'s configuration, in the shape of SWE-ReX's own deployment configs
    (``type`` discriminator, ``get_deployment()``). Besides the fields below, every field of
    corral's session spec is accepted (``workdir``, ``network``, ``timeout_s``, ``labels``,
    ``plugins``, ``mounts``, ...) and checked against it, so a typo fails at construction."""

    nats_url: str | None = None
    """The broker; default ``$CORRAL_NATS_URL``, else ``nats://127.0.0.1:4222``."""
    creds: str | None = None
    """A tenant's credentials file (``corral up --secure``)."""
    backend: str | None = None
    image: str | None = None
    env: dict[str, str] = {}
    resources: dict[str, Any] | None = None
    """``{"cpus": 2, "memory_mb": 4096, "pids": 512}``"""
    type: Literal["corral"] = "corral"
    """Discriminator for (de)serialization/CLI. Do not change."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _valid_spec(self) -> CorralDeploymentConfig:
        self.session_spec()
        return self

    def session_spec(self) -> SessionSpec:
        fields = self.model_dump(exclude={"nats_url", "creds", "type"})
        return session_spec(**fields)

    def get_deployment(self) -> CorralDeployment:
        return CorralDeployment.from_config(self)


class CorralDeployment(AbstractDeployment):
    """``CorralDeployment(nats_url=..., backend="docker", image=..., resources={...}, env={...})``:
    ``start()`` creates a corral session, ``runtime`` drives it, ``stop()`` closes it."""

    def __init__(self, *, logger: logging.Logger | None = None, **kwargs: Any) -> None:
        self._config = CorralDeploymentConfig(**kwargs)
        self._runtime: CorralRuntime | None = None
        self._hooks = CombinedDeploymentHook()
        self.logger = logger or logging.getLogger("corral.swerex")

    @classmethod
    def from_config(cls, config: CorralDeploymentConfig) -> CorralDeployment:
        return cls(**config.model_dump())

    def add_hook(self, hook: DeploymentHook) -> None:
        self._hooks.add_hook(hook)

    async def is_alive(self, *, timeout: float | None = None) -> IsAliveResponse:
        if self._runtime is None:
            return IsAliveResponse(is_alive=False, message="Runtime is None.")
        return await self._runtime.is_alive(timeout=timeout)

    async def start(self) -> None:
        if self._runtime is not None:
            return
        self._hooks.on_custom_step("Starting corral session")
        self._runtime = await CorralRuntime.start(self._config.nats_url, creds=self._config.creds,
                                                  spec=self._config.session_spec(), logger=self.logger)
        self._hooks.on_custom_step(f"corral session {self._runtime.session_id} ready")

    async def stop(self) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await runtime.close()

    @property
    def runtime(self) -> CorralRuntime:
        if self._runtime is None:
            raise DeploymentNotStartedError()
        return self._runtime


# ---------------------------------------------------------------------- free functions


async def _open(url: str, creds: str | None, spec: SessionSpec | None, session_id: str | None) -> _Link:
    loop = LoopThread("corral-swerex")
    client: Client | None = None
    try:
        client = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(Client.connect(url, creds=creds), loop.loop))
        if session_id is None:
            assert spec is not None
            coro = client.create_session(**msgspec.structs.asdict(spec))
        else:
            coro = client.attach(session_id)
        session = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop.loop))
    except BaseException:
        if client is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.aclose(), loop.loop))
        await asyncio.to_thread(loop.close)
        raise
    log.info("swerex_runtime_started", session_id=session.session_id, owned=session_id is None)
    return _Link(loop, client, session, owned=session_id is None)

