"""``CorralRuntime``: an OpenHands V0 runtime whose sandbox is a corral session.

OpenHands calls a runtime's verbs from plain threads (``run``, ``read``, ...) and from its own event
loops (``connect``, ``call_tool_mcp``); every verb here is one corral action through a
``BlockingSession``, whose loop runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import os
from pathlib import Path
import posixpath
import shlex
import tempfile
from typing import Any
import zipfile

import msgspec
from openhands.core.config import OpenHandsConfig
from openhands.events.action import (
    BrowseInteractiveAction, BrowseURLAction, CmdRunAction, FileEditAction, FileReadAction, FileWriteAction,
    IPythonRunCellAction, MCPAction,
)
from openhands.events.event import FileEditSource, FileReadSource
from openhands.events.observation import (
    BrowserOutputObservation, CmdOutputObservation, ErrorObservation, FileEditObservation, FileReadObservation,
    FileWriteObservation, IPythonRunCellObservation, MCPObservation, Observation,
)
from openhands.events.stream import EventStream
from openhands.integrations.provider import PROVIDER_TOKEN_TYPE
from openhands.llm.llm_registry import LLMRegistry
from openhands.runtime.base import Runtime
from openhands.runtime.plugins import PluginRequirement
from openhands.runtime.runtime_status import RuntimeStatus
from openhands.runtime.utils.files import insert_lines, read_lines

from protocol import (
    AnyAction, AnyObservation, BrowseInteractive, BrowserOutput, BrowseUrl, CmdOutput, CmdRun, Error, FileContent,
    FileEdit, FileEdited, FileRead, FileWrite, FileWritten, IPythonOutput, IPythonRun, McpCall, McpResult,
)

from .._session import BlockingSession
from ._bash import BashState, refuse, to_cmd_run, to_observation

DEFAULT_NO_CHANGE_TIMEOUT_S = 10.0
"""OpenHands' action server's default for ``NO_CHANGE_TIMEOUT_SECONDS``."""
AUX_SHELL = "openhands-aux"
"""The shell for the runtime's own commands (listing, copying): the agent's may be busy."""
COPY_CHUNK_BYTES = 384 * 1024
"""Raw bytes per ``file_write`` when copying in (a multiple of 3: each part is whole base64)."""
_PLUGINS = {"jupyter": "jupyter", "agent_skills": "agent_skills"}
"""OpenHands' sandbox plugin requirements that corral has a plugin of the same name for."""
_EDITOR_ERRORS = {"edit_failed", "invalid_argument", "file_not_found", "is_a_directory", "binary_file",
                  "permission_denied"}
_MEDIA = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pdf", ".mp4", ".webm", ".ogg")


class CorralRuntime(Runtime):
    """Select with ``runtime = "corral_integrations.openhands.CorralRuntime"`` in OpenHands'
    ``config.toml`` (``[core]``) or ``RUNTIME=corral_integrations.openhands.CorralRuntime``.

    Constructed by OpenHands, it takes the broker from ``$CORRAL_NATS_URL`` and the session spec
    from ``$CORRAL_SESSION_SPEC`` (JSON, e.g. ``{"backend": "docker"}``); constructed directly, from
    the keyword arguments ``nats_url``, ``creds`` and any ``SessionSpec`` field.
    """

    def __init__(self, config: OpenHandsConfig, event_stream: EventStream, llm_registry: LLMRegistry,
                 sid: str = "default", plugins: list[PluginRequirement] | None = None,
                 env_vars: dict[str, str] | None = None, status_callback: Any = None,
                 attach_to_existing: bool = False, headless_mode: bool = True, user_id: str | None = None,
                 git_provider_tokens: PROVIDER_TOKEN_TYPE | None = None, *, nats_url: str | None = None,
                 creds: str | None = None, **spec: Any) -> None:
        super().__init__(config, event_stream, llm_registry, sid, plugins, env_vars, status_callback,
                         attach_to_existing, headless_mode, user_id, git_provider_tokens)
        self._nats_url = nats_url
        self._creds = creds
        self._spec = {**json.loads(os.environ.get("CORRAL_SESSION_SPEC") or "{}"), **spec}
        startup = dict(config.sandbox.runtime_startup_env_vars or {})
        no_change = startup.get("NO_CHANGE_TIMEOUT_SECONDS") or os.environ.get("NO_CHANGE_TIMEOUT_SECONDS")
        self._bash = BashState(float(no_change) if no_change else DEFAULT_NO_CHANGE_TIMEOUT_S)
        self._session: BlockingSession | None = None
        self._workdir = ""
        self._jupyter_cwd: str | None = None
        self._interpreter: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        self.set_runtime_status(RuntimeStatus.STARTING_RUNTIME)
        await asyncio.to_thread(self._open)
        self._runtime_initialized = True
        self.set_runtime_status(RuntimeStatus.READY)

    def _open(self) -> None:
        spec = dict(self._spec)
        wanted = [_PLUGINS[p.name] for p in self.plugins if p.name in _PLUGINS]
        if self.config.enable_browser:
            wanted.append("browser")
        spec["plugins"] = list(dict.fromkeys([*spec.get("plugins", []), *wanted]))
        # The environment is the session's from the start (it survives a shell that dies), and
        # git's identity rides on it too: no ~/.bashrc or ~/.gitconfig is written (on the local
        # backend those would be the host's).
        env = {k.upper(): v for k, v in {**self.initial_env_vars,
                                          **(self.config.sandbox.runtime_startup_env_vars or {})}.items()}
        name, email = self.config.git_user_name, self.config.git_user_email
        env |= {"GIT_AUTHOR_NAME": name, "GIT_COMMITTER_NAME": name,
                "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_EMAIL": email}
        spec["env"] = {**env, **spec.get("env", {})}
        stdio = self.config.mcp.stdio_servers
        if "mcp" not in spec and stdio:
            # OpenHands' stdio servers run where its action server would run them: in the sandbox.
            spec["mcp"] = {"stdio_servers": [{"name": s.name, "command": s.command, "args": list(s.args),
                                              "env": dict(s.env)} for s in stdio]}
        self._session = BlockingSession(self._nats_url, creds=self._creds, **spec)
        out = self._run(CmdRun(command="pwd", shell=AUX_SHELL, timeout_s=60))
        if not isinstance(out, CmdOutput) or out.status != "completed":
            raise RuntimeError(f"the corral sandbox did not answer `pwd`: {out}")
        self._workdir = out.content.strip()
        self._bash.cwd = self._workdir

    def setup_initial_env(self) -> None:
        """Nothing left to do: the environment and git's identity are in the session's spec."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            self._session.close()
        super().close()

    @property
    def session_id(self) -> str:
        """The corral session behind this runtime (``corral log``, ``corral attach`` take it)."""
        return self._require().session_id

    @property
    def workspace_root(self) -> Path:
        return Path(self._workdir or self.config.workspace_mount_path_in_sandbox)

    def _require(self) -> BlockingSession:
        if self._session is None:
            raise RuntimeError("CorralRuntime is not connected (call connect() first)")
        return self._session

    def _run(self, action: AnyAction) -> AnyObservation:
        return self._require().run(action)

    def _timeout(self, action: Any) -> float:
        if action.timeout is None:
            action.set_hard_timeout(self.config.sandbox.timeout, blocking=False)
        return float(action.timeout)

    # ------------------------------------------------------------------ commands

    def run(self, action: CmdRunAction) -> Observation:
        timeout_s = self._timeout(action)
        refused = refuse(action, self._bash)
        if refused is not None:
            return refused
        cmd, bound = to_cmd_run(action, self._bash, timeout_s)
        out = self._run(cmd)
        if not isinstance(out, CmdOutput):
            return _error(out)
        return to_observation(action, out, self._bash, bound, timeout_s)

    def add_env_vars(self, env_vars: dict[str, str]) -> None:
        """Export in the agent's shell and, when the session has one, the IPython kernel; corral
        does not append them to ``~/.bashrc`` (a dead shell's successor starts from the spec's env)."""
        env_vars = {key.upper(): value for key, value in env_vars.items()}
        if not env_vars:
            return
        if any(p.name == "jupyter" for p in self.plugins):
            code = "import os\n" + "".join(f"os.environ[{k!r}] = {json.dumps(v)}\n" for k, v in env_vars.items())
            self.run_ipython(IPythonRunCellAction(code, include_extra=False))
        command = " ".join(f"export {k}={shlex.quote(v)};" for k, v in env_vars.items())
        obs = self.run(CmdRunAction(command))
        if not isinstance(obs, CmdOutputObservation) or obs.exit_code != 0:
            raise RuntimeError(f"Failed to add env vars [{env_vars.keys()}] to environment: {obs.content}")

    def run_ipython(self, action: IPythonRunCellAction) -> Observation:
        timeout_s = self._timeout(action)
        if "jupyter" not in self._session_plugins():
            return ErrorObservation("IPython is not available: the agent's runtime plugins do not include "
                                    "jupyter (corral's jupyter plugin runs the cells)")
        code = action.code
        if self._bash.cwd and self._bash.cwd != self._jupyter_cwd:
            code = f"import os as _corral_os; _corral_os.chdir({self._bash.cwd!r}); del _corral_os\n{code}"
        out = self._run(IPythonRun(code=code, timeout_s=timeout_s))
        if isinstance(out, IPythonOutput) and out.kernel_restarted and action.kernel_init_code:
            # corral says a kernel was fresh only in the answer: the init code comes after this cell
            # (OpenHands runs it before), so it holds for every later cell.
            self._run(IPythonRun(code=action.kernel_init_code, timeout_s=timeout_s))
        if not isinstance(out, IPythonOutput):
            return _error(out)
        self._jupyter_cwd = out.working_dir
        content = out.content.rstrip()
        if out.traceback and out.traceback.strip() not in content:
            content = f"{content}\n{out.traceback}".strip()
        if out.status in ("hard_timeout", "interrupted", "failed"):
            content += f"\n[The cell {out.status.replace('_', ' ')}: {out.reason or ''}]".rstrip(": ]") + "]"
        if action.include_extra:
            content += f"\n[Jupyter current working directory: {out.working_dir}]"
            content += f"\n[Jupyter Python interpreter: {self._kernel_interpreter()}]"
        return IPythonRunCellObservation(content=content, code=action.code,
                                         image_urls=[f"data:image/png;base64,{img}" for img in out.images] or None)

    def _kernel_interpreter(self) -> str:
        if self._interpreter is None:
            out = self._run(IPythonRun(code="import sys as _s; print(_s.executable); del _s", timeout_s=30))
            self._interpreter = out.content.strip() if isinstance(out, IPythonOutput) else "unknown"
        return self._interpreter

    def _session_plugins(self) -> list[str]:
        return [_PLUGINS[p.name] for p in self.plugins if p.name in _PLUGINS] + list(self._spec.get("plugins", []))

    # ------------------------------------------------------------------ files

    def _resolve(self, path: str) -> str:
        return path if posixpath.isabs(path) else posixpath.join(self._bash.cwd or self._workdir, path)

    def read(self, action: FileReadAction) -> Observation:
        if action.impl_source == FileReadSource.OH_ACI:
            out = self._run(FileEdit(command="view", path=action.path, view_range=action.view_range))
            if isinstance(out, Error) and out.code in _EDITOR_ERRORS:
                return FileReadObservation(content=f"ERROR:\n{out.message}", path=action.path,
                                           impl_source=FileReadSource.OH_ACI)
            if not isinstance(out, FileEdited):
                return _error(out)
            return FileReadObservation(content=out.content, path=action.path, impl_source=FileReadSource.OH_ACI)
        path = self._resolve(action.path)
        if path.lower().endswith(_MEDIA):
            out = self._run(FileRead(path=path, encoding="base64"))
            if isinstance(out, FileContent):
                mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
                return FileReadObservation(path=path, content=f"data:{mime};base64,{out.content}")
        else:
            out = self._run(FileRead(path=path))
            if isinstance(out, FileContent):
                lines = read_lines(out.content.splitlines(keepends=True), action.start, action.end)
                return FileReadObservation(path=path, content="".join(lines))
        return self._file_error(out, path)

    def _file_error(self, out: AnyObservation, path: str) -> Observation:
        if isinstance(out, Error) and out.code == "file_not_found":
            return ErrorObservation(f"File not found: {path}. Your current working directory is {self._bash.cwd}.")
        if isinstance(out, Error) and out.code == "is_a_directory":
            return ErrorObservation(f"Path is a directory: {path}. You can only read files")
        if isinstance(out, Error) and out.code == "binary_file":
            return ErrorObservation("ERROR_BINARY_FILE")
        return _error(out)

    def write(self, action: FileWriteAction) -> Observation:
        path = self._resolve(action.path)
        insert = action.content.split("\n")
        original: list[str] = []
        if action.start != 0 or action.end != -1:
            current = self._run(FileRead(path=path))
            if isinstance(current, FileContent):
                original = current.content.splitlines(keepends=True)
        out = self._run(FileWrite(path=path, content="".join(insert_lines(insert, original, action.start, action.end))))
        if not isinstance(out, FileWritten):
            return self._file_error(out, path)
        return FileWriteObservation(content="", path=path)

    def edit(self, action: FileEditAction) -> Observation:
        if action.impl_source == FileEditSource.LLM_BASED_EDIT:
            return self.llm_based_edit(action)  # OpenHands' own: an LLM drafts, read/write apply it
        if action.command not in ("view", "create", "str_replace", "insert", "undo_edit"):
            return ErrorObservation(f"Unrecognized editor command {action.command!r}: corral's editor has "
                                    "view, create, str_replace, insert and undo_edit")
        out = self._run(FileEdit(command=action.command, path=self._resolve(action.path),  # type: ignore[arg-type]
                                 file_text=action.file_text, old_str=action.old_str, new_str=action.new_str,
                                 insert_line=action.insert_line, view_range=getattr(action, "view_range", None)))
        if isinstance(out, Error) and out.code in _EDITOR_ERRORS:
            return FileEditObservation(content=f"ERROR:\n{out.message}", path=action.path,
                                       impl_source=FileEditSource.OH_ACI)
        if not isinstance(out, FileEdited):
            return _error(out)
        return FileEditObservation(content=out.content, path=action.path, old_content=action.old_str,
                                   new_content=action.new_str, impl_source=FileEditSource.OH_ACI, diff=out.diff)

    # ------------------------------------------------------------------ browser, MCP

    def browse(self, action: BrowseURLAction) -> Observation:
        out = self._run(BrowseUrl(url=action.url, return_axtree=action.return_axtree, screenshot=True,
                                  timeout_s=self._timeout(action)))
        return _browser(out, action.url)

    def browse_interactive(self, action: BrowseInteractiveAction) -> Observation:
        out = self._run(BrowseInteractive(browser_actions=action.browser_actions,
                                          return_axtree=action.return_axtree, screenshot=True,
                                          timeout_s=self._timeout(action)))
        return _browser(out, action.browser_actions)

    def get_mcp_config(self, extra_stdio_servers: Any = None) -> Any:
        """OpenHands' own MCP config, unchanged: the servers of the corral session (spec ``mcp``)
        are called by ``MCPAction`` through corral, but OpenHands' agent lists tools only from the
        servers it connects to itself."""
        return self.config.mcp

    async def call_tool_mcp(self, action: MCPAction) -> Observation:
        out = await asyncio.to_thread(self._run, McpCall(tool=action.name, arguments=dict(action.arguments)))
        if not isinstance(out, McpResult):
            return _error(out)
        body = {"content": msgspec.to_builtins(out.content), "structuredContent": out.structured_content,
                "isError": out.is_error}
        return MCPObservation(content=json.dumps(body), name=action.name, arguments=action.arguments)

    # ------------------------------------------------------------------ copy, list

    def copy_to(self, host_src: str, sandbox_dest: str, recursive: bool = False) -> None:
        if not os.path.exists(host_src):
            raise FileNotFoundError(f"Source file {host_src} does not exist")
        dest = self._resolve(sandbox_dest)
        if os.path.isdir(host_src):
            if not recursive:
                raise IsADirectoryError(f"{host_src} is a directory; copy_to needs recursive=True")
            root = posixpath.join(dest, os.path.basename(os.path.normpath(host_src)))
            for parent, _, files in os.walk(host_src):
                rel = os.path.relpath(parent, host_src)
                target = root if rel == "." else posixpath.join(root, *Path(rel).parts)
                self._aux(f"mkdir -p {shlex.quote(target)}")
                for name in files:
                    self._upload(os.path.join(parent, name), posixpath.join(target, name))
        else:
            self._upload(host_src, posixpath.join(dest, os.path.basename(host_src)))

    def _upload(self, src: str, dest: str) -> None:
        with open(src, "rb") as f:
            data = f.read()
        parts = [data[i:i + COPY_CHUNK_BYTES] for i in range(0, len(data), COPY_CHUNK_BYTES)] or [b""]
        for i, part in enumerate(parts):
            out = self._run(FileWrite(path=dest, content=base64.b64encode(part).decode(), encoding="base64",
                                      append=i > 0))
            if not isinstance(out, FileWritten):
                raise RuntimeError(f"copying {src} to {dest} in the corral sandbox failed: {_describe(out)}")

    def _aux(self, command: str) -> str:
        out = self._run(CmdRun(command=command, shell=AUX_SHELL, timeout_s=120))
        if not isinstance(out, CmdOutput) or out.status != "completed" or out.exit_code != 0:
            raise RuntimeError(f"`{command}` failed in the corral sandbox: {_describe(out)}")
        return out.content

    def list_files(self, path: str | None = None) -> list[str]:
        """Entries of a directory (default: the workspace), directories with a trailing ``/``."""
        target = self._resolve(path) if path else self._workdir
        try:
            listing = self._aux(f"ls -1Ap {shlex.quote(target)}")
        except RuntimeError:
            return []
        names = [line for line in listing.splitlines() if line]
        return sorted(n for n in names if n.endswith("/")) + sorted(n for n in names if not n.endswith("/"))

    def copy_from(self, path: str) -> Path:
        """A zip on the host of ``path`` (a file or a directory) in the sandbox."""
        source = self._resolve(path)
        listing = self._aux(f"if [ -d {shlex.quote(source)} ]; then cd {shlex.quote(source)} && find . -type f; "
                            f"else echo {shlex.quote(source)}; fi")
        fd, zip_path = tempfile.mkstemp(suffix=".zip", prefix="corral-copy-")
        os.close(fd)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for line in filter(None, listing.splitlines()):
                rel = line[2:] if line.startswith("./") else posixpath.basename(line)
                out = self._run(FileRead(path=posixpath.join(source, rel) if line.startswith("./") else line,
                                         encoding="base64"))
                if not isinstance(out, FileContent):
                    raise RuntimeError(f"reading {line} from the corral sandbox failed: {_describe(out)}")
                zf.writestr(rel, base64.b64decode(out.content))
        return Path(zip_path)


def _describe(out: AnyObservation) -> str:
    if isinstance(out, Error):
        return f"{out.code}: {out.message}"
    if isinstance(out, CmdOutput):
        return f"{out.status}, exit code {out.exit_code}: {out.content.strip()[-500:]} {out.hint or ''}".strip()
    return repr(out)


def _error(out: AnyObservation) -> ErrorObservation:
    if isinstance(out, Error) and out.code == "unsupported":
        return ErrorObservation(f"Unsupported by this corral deployment: {out.message}")
    return ErrorObservation(f"corral: {_describe(out)}")


def _browser(out: AnyObservation, trigger: str) -> Observation:
    if not isinstance(out, BrowserOutput):
        return _error(out)
    return BrowserOutputObservation(
        content=out.content, url=out.url, trigger_by_action=trigger, screenshot=out.screenshot or "",
        screenshot_path=out.screenshot_path, open_pages_urls=list(out.open_pages_urls),
        active_page_index=out.active_page_index, last_browser_action=out.last_browser_action,
        last_browser_action_error=out.last_browser_action_error, focused_element_bid=out.focused_element_bid or "",
        error=bool(out.last_browser_action_error))
