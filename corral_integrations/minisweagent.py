"""mini-swe-agent on corral: ``CorralEnvironment``, an environment of mini-swe-agent 2.x.

Switch a mini-swe-agent YAML config to corral with one line::

    environment:
      environment_class: corral_integrations.minisweagent.CorralEnvironment
      image: python:3.12          # and any other corral session field: backend, resources, ...

Semantics match mini-swe-agent's own environments (``LocalEnvironment``, ``DockerEnvironment``):
every ``execute`` is a fresh process, so ``cd`` and ``export`` do not carry over to the next call
(mini's prompts tell the model exactly that), stdout and stderr are merged, stdin is empty and
stdout is a pipe (not a terminal: no pager, no colours, ``ls`` one name a line). It is done with
one persistent corral shell per environment that starts ``interpreter`` (``bash -c`` by
default) as a child for each command, in ``cwd`` and with the session's env: a fork/exec per
call, like ``subprocess.run`` in ``LocalEnvironment``, instead of a new PTY shell per call (which
costs a bash start-up plus its prompt hand-shake every time; see docs/integrations.md).

The result dict, the timeout result and the ``Submitted`` raised on the submission marker are
those of ``LocalEnvironment``. Differences: the sandbox is corral's (local, Docker, kubernetes,
... backends; a session per environment), an output over 30 000 characters is its head and tail
with a note naming the full log (mini's stock templates only show the first and last 5 000
characters of a long output), and a timed-out command gets C-c first and SIGKILL 2 s later.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import weakref
from typing import Any

from minisweagent.exceptions import Submitted
from minisweagent.utils.serialize import recursive_merge
from pydantic import BaseModel, ConfigDict

from protocol import CmdOutput, CmdRun, Error, new_id

from ._session import BlockingSession, session_spec

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
SHELL = "mini"
"""The corral shell the environment's commands are started from (never ``main``: a user's own
commands in the same session keep their shell)."""
ANSWER_GRACE_S = 30.0
"""How long past a command's timeout to wait for corral's answer before calling the sandbox gone."""
_UNAME = "pwd -P; uname -s; uname -n; uname -r; uname -v; uname -m"
_UNAME_KEYS = ("system", "node", "release", "version", "machine")


class CorralEnvironmentConfig(BaseModel):
    """mini-swe-agent's environment fields (``cwd``, ``env``, ``forward_env``, ``timeout``,
    ``interpreter``) and the corral session's (``nats_url`` and the ``SessionSpec`` fields).

    An unknown key is an error, so a typo fails when the environment is built."""

    model_config = ConfigDict(extra="forbid")

    # mini-swe-agent's own fields
    cwd: str = ""
    """Where commands run; empty is the sandbox's first directory, a relative path is taken from it."""
    env: dict[str, str] = {}
    """Environment variables of every command (they become the session's ``env``)."""
    forward_env: list[str] = []
    """Host variables passed into the sandbox when they are set here (``env`` wins on a conflict)."""
    timeout: int = 30
    """Seconds a command may run, unless ``execute`` is given its own ``timeout``."""
    interpreter: list[str] = ["bash", "-c"]
    """What runs each command, the command appended as one argument (``["/bin/sh", "-c"]`` is exactly
    ``LocalEnvironment``'s ``subprocess`` shell; ``["bash", "-lc"]`` is ``DockerEnvironment``'s)."""

    # where corral is
    nats_url: str | None = None
    """Default ``$CORRAL_NATS_URL``, else ``nats://127.0.0.1:4222``."""
    creds: str | None = None

    # the corral session (protocol.SessionSpec; nested values are checked by it)
    backend: str | None = None
    image: str | None = None
    workdir: str | None = None
    labels: dict[str, str] = {}
    resources: dict[str, Any] | None = None
    network: str | None = None
    isolation: str | None = None
    idle_timeout_s: float | None = None
    plugins: list[str] = []
    mounts: list[dict[str, Any]] = []
    secrets: dict[str, str] = {}
    security: dict[str, Any] | None = None
    placement: dict[str, Any] | None = None
    persistent: bool = False
    keep: bool = False

    def session_fields(self) -> dict[str, Any]:
        mini = {"cwd", "env", "forward_env", "timeout", "interpreter", "nats_url", "creds"}
        fields = {k: v for k, v in self.model_dump().items() if k not in mini}
        forwarded = {k: os.environ[k] for k in self.forward_env if k in os.environ}
        fields["env"] = forwarded | self.env
        return fields


class CorralEnvironment:
    """mini-swe-agent's environment protocol on a corral session (created here, ended by ``close``)."""

    def __init__(self, *, config_class: type = CorralEnvironmentConfig, **kwargs: Any) -> None:
        self.config = config_class(**kwargs)
        spec = session_spec(**self.config.session_fields())  # a bad session field fails before connecting
        self._session = BlockingSession(self.config.nats_url, creds=self.config.creds, spec=spec)
        # mini's own batch runner never closes its environments: like DockerEnvironment's __del__,
        # end the sandbox when the environment is dropped, or at exit (while the loop still runs).
        self._finalizer = weakref.finalize(self, _close_quietly, self._session)
        self._closed = False
        try:
            probe = self._run(CmdRun(id=new_id(), command=_UNAME, shell=SHELL, timeout_s=30), 30)
            lines = probe.content.splitlines() if isinstance(probe, CmdOutput) else []
            if not isinstance(probe, CmdOutput) or probe.exit_code != 0 or len(lines) != 1 + len(_UNAME_KEYS):
                raise RuntimeError(f"cannot read the sandbox's directory and uname: {probe}")
        except BaseException:
            self._session.close()
            raise
        self.base_dir = lines[0]
        self.uname = dict(zip(_UNAME_KEYS, lines[1:]))

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        """Run ``action["command"]`` in a fresh process; the same dict as ``LocalEnvironment.execute``."""
        command = action.get("command", "")
        timeout = timeout or self.config.timeout
        directory = os.path.join(self.base_dir, cwd or self.config.cwd)
        # pipefail: the exit code is the interpreter's, not cat's; cat makes stdout a pipe.
        line = f"set -o pipefail; {shlex.join([*self.config.interpreter, command])} </dev/null 2>&1 | cat"
        try:
            obs = self._run(CmdRun(id=new_id(), command=line, shell=SHELL, cwd=directory, timeout_s=timeout),
                            timeout + ANSWER_GRACE_S)
        except Exception as exc:  # the broker or the sandbox is gone: an exception result, as Local's
            obs = exc
        match obs:
            case CmdOutput(status="completed"):
                output = {"output": _text(obs.content), "returncode": obs.exit_code, "exception_info": ""}
            case CmdOutput(status="hard_timeout"):
                output = _failure(subprocess.TimeoutExpired(command, timeout), _interrupted(obs.content))
            case CmdOutput():
                output = _failure(RuntimeError(f"corral answered {obs.status}: {obs.content or obs.hint or ''}"), "")
            case Error():
                output = _failure(RuntimeError(f"corral error {obs.code}: {obs.message}"), "")
            case Exception():
                output = _failure(obs, "")
            case _:
                output = _failure(RuntimeError(f"unexpected corral observation {type(obs).__name__}"), "")
        self._check_finished(output)
        return output

    def _run(self, action: CmdRun, wait_s: float) -> Any:
        if self._closed:
            raise RuntimeError(f"the corral session {self.session_id} is closed")
        return self._session.run(action, wait_s=wait_s)

    def _check_finished(self, output: dict) -> None:
        """Raise ``Submitted`` when the first line of a successful output is the marker; the rest
        of the output is the submission."""
        lines = output.get("output", "").lstrip().splitlines(keepends=True)
        if lines and lines[0].strip() == SUBMIT_MARKER and output["returncode"] == 0:
            submission = "".join(lines[1:])
            raise Submitted({"role": "exit", "content": submission,
                             "extra": {"exit_status": "Submitted", "submission": submission}})

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """The config, the sandbox's ``uname`` (system, node, release, version, machine: what the
        stock prompts render) and the session id, under ``kwargs``."""
        return recursive_merge(self.config.model_dump(), self.uname,
                               {"corral_session_id": self.session_id, "base_dir": self.base_dir}, kwargs)

    def serialize(self) -> dict:
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(mode="json"),
                    "environment_type": f"{self.__class__.__module__}.{self.__class__.__name__}",
                },
                "corral": {"session_id": self.session_id,
                           "worker_id": getattr(self._session.session.info, "worker_id", None)},
            }
        }

    def close(self) -> None:
        """End the session (its sandbox goes away); safe to call twice."""
        self._closed = True
        self._finalizer.detach()
        self._session.close()

    cleanup = close  # DockerEnvironment's name for it

    def __enter__(self) -> CorralEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(session: BlockingSession) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001 - a broker already gone: the controller reaps the session
        pass


def _text(content: str) -> str:
    """Newlines as ``subprocess`` in text mode reads them (``\\r\\n`` and ``\\r`` become ``\\n``)."""
    return content.replace("\r\n", "\n").replace("\r", "\n")


def _interrupted(content: str) -> str:
    """What the command printed before its timeout, without the newline bash prints when C-c
    ends its foreground job."""
    text = _text(content)
    return text[:-1] if text.endswith("\n") else text


def _failure(exc: Exception, partial: str) -> dict[str, Any]:
    """The dict ``LocalEnvironment`` answers when running a command raised ``exc``."""
    return {
        "output": partial,
        "returncode": -1,
        "exception_info": f"An error occurred while executing the command: {exc}",
        "extra": {"exception_type": type(exc).__name__, "exception": str(exc)},
    }
