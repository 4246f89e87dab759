"""The public wire contract: actions, observations and control messages.

Every event is one frozen msgspec Struct in a tagged union, tag field ``kind``.
Evolution follows msgspec's rules: new fields get defaults, tags and field types
never change, a breaking change is a new struct with a new tag.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Encoding = Literal["text", "base64"]
CmdStatus = Literal["completed", "running", "hard_timeout", "interrupted", "not_executed", "failed"]
EditCommand = Literal["view", "create", "str_replace", "insert", "undo_edit"]
SessionStatus = Literal["starting", "ready", "closing", "closed", "lost", "recovered", "paused"]
PluginState = Literal["declared", "starting", "ready", "failed"]
Risk = Literal["low", "medium", "high", "unknown"]
"""What a security analyzer says of an action, least to most severe: low, medium, high; ``unknown``
(the analyzer could not tell) is mapped by the policy like the others."""
Decision = Literal["allow", "confirm", "block"]
"""What a session's policy does with an action of a risk, weakest to strongest."""
RejectedBy = Literal["policy", "approver", "timeout"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    """Root of every event on the wire."""


# --------------------------------------------------------------------------- actions


class Action(Event, frozen=True, kw_only=True):
    id: str = ""
    """Client-chosen idempotency key: executes at most once per session. Required on the wire (an
    action without one is ``bad_payload``); the SDK fills in a fresh one when it is left empty."""
    timeout_s: float | None = None
    """Hard timeout; unset takes the session's default."""


class CmdRun(Action, frozen=True, kw_only=True, tag="cmd_run"):
    command: str
    shell: str = "main"
    is_input: bool = False
    soft_timeout_s: float | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None


class FileRead(Action, frozen=True, kw_only=True, tag="file_read"):
    path: str
    start_line: int | None = None
    end_line: int | None = None
    encoding: Encoding = "text"


class FileWrite(Action, frozen=True, kw_only=True, tag="file_write"):
    path: str
    content: str
    encoding: Encoding = "text"
    append: bool = False
    """Add ``content`` at the end of the file instead of replacing it (write big files in parts)."""


class FileEdit(Action, frozen=True, kw_only=True, tag="file_edit"):
    command: EditCommand
    path: str
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None
    view_range: list[int] | None = None


class IPythonRun(Action, frozen=True, kw_only=True, tag="ipython_run"):
    """A cell for an IPython kernel of the session (plugin ``jupyter``), started on the first cell."""

    code: str = ""
    kernel: str = "main"
    """Named kernels, each its own process."""
    restart: bool = False
    """Restart the kernel first (its state is lost); an empty ``code`` only restarts."""


class BrowseUrl(Action, frozen=True, kw_only=True, tag="browse_url"):
    """Open a URL in the session's browser (plugin ``browser``); the answer's ``content`` is the
    page as Markdown. ``timeout_s`` bounds the page load."""

    url: str
    return_axtree: bool = False
    """Also answer the accessibility tree (with ``[bid]`` markers) in ``axtree``."""
    screenshot: bool = False
    """Also answer a PNG of the viewport (base64 in ``screenshot``, the file in ``screenshot_path``)."""


class BrowseInteractive(Action, frozen=True, kw_only=True, tag="browse_interactive"):
    browser_actions: str
    """BrowserGym's action language, one call per line, run in order: ``goto(url)``,
    ``click(bid)``, ``fill(bid, value)``, ``select_option(bid, options)``, ``press(bid, key_comb)``,
    ``scroll(dx, dy)``, ``new_tab()``, ``tab_focus(i)``, ... (literal arguments only)."""
    return_axtree: bool = False
    """``content`` is the accessibility tree already; this also fills ``axtree``."""
    screenshot: bool = False


class McpCall(Action, frozen=True, kw_only=True, tag="mcp_call"):
    """Call a tool of one of the session's MCP servers; the answer is ``mcp_result`` (or an error:
    ``unknown_tool``, ``ambiguous_tool``, ``invalid_argument``, ``mcp_unavailable``,
    ``mcp_server_died``, ``timeout``). ``timeout_s`` bounds the call (default: the server's own)."""

    server: str | None = None
    """Which server's tool; needed only when two servers offer a tool of that name. (Was ``str``;
    widened to ``str | None`` with a default: every old payload still decodes.)"""
    tool: str
    # The arguments belong to the MCP server's own tool schema, not to corral.
    arguments: dict[str, Any] = {}


class McpList(Action, frozen=True, kw_only=True, tag="mcp_list"):
    """List the tools of the session's MCP servers (one server's with ``server``): ``mcp_tools``."""

    server: str | None = None


class Confirm(Action, frozen=True, kw_only=True, tag="confirm"):
    """Release or reject an action held for confirmation (``confirmation_required``). Never
    analysed, never queued behind other actions. Who may publish one is the broker's business:
    with ``corral up --secure`` only a tenant's ``approver`` role may."""

    action_id: str
    """The id of the action awaiting confirmation."""
    approve: bool = True
    by: str = ""
    """Who decided, as the approver says (recorded in the answer and the audit trail; the broker's
    permissions, not this field, are what allow a client to approve)."""


AnyAction = CmdRun | FileRead | FileWrite | FileEdit | IPythonRun | BrowseUrl | BrowseInteractive | McpCall | McpList | Confirm

ACTION_KINDS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in AnyAction.__args__)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- observations


class Observation(Event, frozen=True, kw_only=True, omit_defaults=False):
    """Every field is always on the wire, so a plain JSON consumer sees e.g. ``status: completed``."""

    id: str
    cause: str | None = None
    """The id of the action this answers (None when the action's id could not be read)."""
    session_id: str = ""


class CmdOutput(Observation, frozen=True, kw_only=True, tag="cmd_output"):
    content: str = ""
    status: CmdStatus = "completed"
    exit_code: int | None = None
    working_dir: str | None = None
    pid: int | None = None
    shell: str = "main"
    truncated: bool = False
    full_output_path: str | None = None
    hint: str | None = None
    """Set for `running` / `not_executed`: what the agent can do next."""


IPythonStatus = Literal["completed", "error", "hard_timeout", "interrupted", "failed"]


class IPythonOutput(Observation, frozen=True, kw_only=True, tag="ipython_output"):
    """The answer to ``ipython_run``: what the cell printed, returned and displayed, in order."""

    content: str = ""
    """stdout, stderr, results and display text in order, ANSI colour codes stripped."""
    status: IPythonStatus = "completed"
    kernel: str = "main"
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None
    """Plain text, when the cell raised."""
    images: list[str] = []
    """Base64 PNG of every ``image/png`` display, in order."""
    working_dir: str | None = None
    """The kernel's working directory after the cell."""
    kernel_restarted: bool = False
    """This cell ran in a fresh kernel (the old one died or was restarted)."""
    truncated: bool = False
    full_output_path: str | None = None
    """When ``truncated``: the file in the sandbox that holds all of the cell's output."""
    reason: str | None = None
    """Why the status is ``failed`` / ``interrupted``, when it is."""


class CmdChunk(Observation, frozen=True, kw_only=True, tag="cmd_chunk"):
    """Output of a running command. A command that streamed any chunk streams all of its output
    (the last chunk comes before the final ``cmd_output``); a quick one may stream none."""

    seq: int
    data: str


class FileContent(Observation, frozen=True, kw_only=True, tag="file_content"):
    path: str
    content: str
    encoding: Encoding = "text"
    total_lines: int | None = None


class FileWritten(Observation, frozen=True, kw_only=True, tag="file_written"):
    path: str
    size: int


class FileEdited(Observation, frozen=True, kw_only=True, tag="file_edited"):
    path: str
    content: str
    """The editor's text: a numbered view, or a message with a snippet of the result."""
    diff: str = ""


class Error(Observation, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str


class ActionHeld(Observation, frozen=True, kw_only=True, tag="action_held"):
    """Superseded by ``confirmation_required`` (no longer published; kept so that stored streams
    still decode)."""

    reason: str
    gate: str
    timeout_s: float | None = None


class ConfirmationRequired(Observation, frozen=True, kw_only=True, tag="confirmation_required"):
    """Not an answer: the action ``cause`` names waits for a ``confirm`` (approve or reject) naming
    it, for at most ``timeout_s``; its final observation follows either way (its own answer once
    released, ``rejected`` otherwise). Other shells and plugins of the session go on meanwhile."""

    action_id: str
    action_kind: str
    risk: Risk
    reason: str
    summary: str
    """The pending action in one line (a command, a path, a URL), for the person asked."""
    analyzer: str = ""
    """The analyzer (or gate) whose finding asked for the confirmation."""
    timeout_s: float | None = None


class Rejected(Observation, frozen=True, kw_only=True, tag="rejected"):
    """The final answer of an action that did not run: the policy blocked it (``decided_by:
    policy``), an approver rejected it (``approver``) or no ``confirm`` came in time (``timeout``)."""

    risk: Risk
    reason: str
    decided_by: RejectedBy
    code: str
    """``action_denied``, ``action_rejected`` or ``confirmation_timeout``."""
    analyzer: str = ""
    approver: str = ""
    """The ``by`` of the ``confirm`` that rejected it, when one did."""


class ConfirmResult(Observation, frozen=True, kw_only=True, tag="confirm_result"):
    """The answer to a ``confirm``: the held action it names was released (``approved``) or rejected."""

    action_id: str
    approved: bool


class BrowserOutput(Observation, frozen=True, kw_only=True, tag="browser_output"):
    """The answer to ``browse_url`` and ``browse_interactive``: where the browser is now.

    A step that failed (an unknown bid, a bad action string, a refused connection, a page that
    did not load in time) is reported in ``last_browser_action_error``; the browser lives on.
    """

    url: str = ""
    title: str = ""
    content: str = ""
    """``browse_url``: the page as Markdown; ``browse_interactive``: the accessibility tree text."""
    axtree: str | None = None
    """The accessibility tree with ``[bid]`` markers, when asked (``return_axtree``)."""
    screenshot: str | None = None
    """Base64 PNG of the viewport, when asked."""
    screenshot_path: str | None = None
    """The same PNG as a file in the session's output directory (never in the workspace)."""
    open_pages_urls: list[str] = []
    active_page_index: int = 0
    focused_element_bid: str | None = None
    last_browser_action: str = ""
    last_browser_action_error: str = ""
    """Empty when every step of the action worked."""
    downloads: list[str] = []
    """Files the last action downloaded (in the session's output directory)."""
    browser_restarted: bool = False
    """The browser had died and was started afresh for this action (its cookies and tabs are gone)."""
    truncated: bool = False
    """``content`` was cut to fit one broker message."""


class McpToolAnnotations(msgspec.Struct, frozen=True, kw_only=True):
    """The MCP tool's hints, as its server gives them (None: not said)."""

    title: str | None = None
    read_only_hint: bool | None = None
    """The tool changes nothing: a call that its server's death cut short is retried once."""
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    open_world_hint: bool | None = None


class McpTool(msgspec.Struct, frozen=True, kw_only=True):
    server: str
    name: str
    description: str = ""
    # The tool's JSON Schema belongs to its MCP server, not to corral.
    input_schema: dict[str, Any] = {}
    annotations: McpToolAnnotations | None = None


class McpServerProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A server whose tools could not be listed (its error code and why); the others were."""

    server: str
    code: str
    message: str


class McpTools(Observation, frozen=True, kw_only=True, tag="mcp_tools"):
    """The answer to ``mcp_list``: every tool of every server that answered, in server order."""

    tools: list[McpTool] = []
    unavailable: list[McpServerProblem] = []


class McpText(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="text"):
    text: str


class McpImage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="image"):
    data: str
    """Base64, as the server sent it."""
    mime_type: str


class McpAudio(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="audio"):
    data: str
    """Base64, as the server sent it."""
    mime_type: str


class McpResource(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="resource"):
    """An embedded resource: its text, or its bytes as base64 in ``blob``."""

    uri: str
    mime_type: str | None = None
    text: str | None = None
    blob: str | None = None


class McpResourceLink(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="resource_link"):
    uri: str
    name: str = ""
    description: str | None = None
    mime_type: str | None = None


McpContent = McpText | McpImage | McpAudio | McpResource | McpResourceLink


class McpResult(Observation, frozen=True, kw_only=True, tag="mcp_result"):
    """The answer to ``mcp_call``: what the tool returned. ``is_error`` is the tool's own failure
    (it ran and said so); failures to reach or run it are ``error`` observations instead."""

    server: str
    tool: str
    content: list[McpContent] = []
    is_error: bool = False
    # The tool's structured output belongs to its MCP server's output schema, not to corral.
    structured_content: dict[str, Any] | None = None
    retried: bool = False
    """The server died during a first attempt at this read-only call; this is the second one."""


AnyObservation = CmdOutput | IPythonOutput | BrowserOutput | CmdChunk | FileContent | FileWritten | FileEdited | Error | ActionHeld | ConfirmationRequired | Rejected | ConfirmResult | McpTools | McpResult

OBSERVATION_KINDS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in AnyObservation.__args__)  # type: ignore[attr-defined]
INTERIM_KINDS: frozenset[str] = frozenset({"cmd_chunk", "action_held", "confirmation_required"})
"""Observations that come before an action's answer; every other kind is a final answer."""


# --------------------------------------------------------------------------- control


class Resources(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    cpus: float | None = None
    memory_mb: int | None = None
    pids: int | None = None


class Mount(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A host directory shown inside the sandbox (workers allow only what they are configured to)."""

    source: str
    target: str
    read_only: bool = True


class Toleration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Kubernetes toleration, in the pod spec's own terms (``operator`` Equal or Exists)."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Placement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Where on a cluster a session's pod may run (the kubernetes backend; others refuse a non-empty one).

    Added to what the worker's config already asks; ``runtime_class`` names a RuntimeClass the
    cluster has (gVisor, Kata), overriding the one ``isolation`` maps to."""

    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []
    runtime_class: str | None = None


class SecurityPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """What happens to an action of each risk. Unset keys keep the deployment's decision; a
    session may only make a decision stricter (allow < confirm < block) and a timeout shorter."""

    low: Decision | None = None
    medium: Decision | None = None
    high: Decision | None = None
    unknown: Decision | None = None
    confirm_timeout_s: float | None = None
    """How long a held action waits for a ``confirm`` before it is rejected."""


class SecurityRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One rule of the ``rules`` analyzer: every condition given must hold for it to match.

    The same shape is a ``[[rules]]`` table of a TOML policy file.
    """

    risk: Risk
    reason: str = ""
    name: str = ""
    kind: str | None = None
    """Action kind (``cmd_run``, ``file_write``, ...); unset: any kind the other conditions apply to."""
    command: str | None = None
    """Regular expression searched in a ``cmd_run``'s command (or an ``ipython_run``'s code) as written."""
    program: str | None = None
    """Shell-aware: a program run anywhere in the parsed command (pipelines, ``;`` chains, ``$(...)``,
    after quotes, ``\\``, paths like ``/bin/rm`` are stripped), e.g. ``rm``; a regex on the name."""
    args: str | None = None
    """Shell-aware, with ``program``: a regex searched in that program's arguments joined by spaces."""
    path: str | None = None
    """Glob on the path of a file action (``~`` is the sandbox user's home), e.g. ``/etc/**``."""
    host: str | None = None
    """Glob on the host of a browse action's URL, e.g. ``*.internal``."""


class SecuritySpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A session's additions to the deployment's security: a stricter policy, more rules, more
    analyzers. Asking for a weaker decision than the deployment's is ``invalid_spec``."""

    policy: SecurityPolicy | None = None
    rules: list[SecurityRule] = []
    analyzers: list[str] | None = None
    """Analyzers (entry-point group ``corral.analyzers``) to run in addition to the deployment's."""


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """What `corral.ctl.create` takes. Every field is optional."""

    backend: str | None = None
    image: str | None = None
    env: dict[str, str] = {}
    workdir: str | None = None
    labels: dict[str, str] = {}
    idle_timeout_s: float | None = None
    timeout_s: float | None = None
    soft_timeout_s: float | None = None
    plugins: list[str] = []
    resources: Resources | None = None
    network: str | None = None
    isolation: str | None = None
    """``default`` (the backend's own) or ``gvisor`` (the Docker engine's runsc runtime, when it has one)."""
    keep: bool = False
    """On close, stop the sandbox but keep it (container, workspace) for inspection instead of removing it."""
    mounts: list[Mount] = []
    """Host directories to show inside the sandbox, e.g. repository mirrors for a batch; a worker
    refuses any source outside the roots it was started with (``--allow-mount``)."""
    # MCP server definitions are the MCP bridge's own format (a later issue gives them meaning).
    mcp: dict[str, Any] = {}
    security: SecuritySpec | None = None
    persistent: bool = False
    """A workspace that outlives the sandbox's processes (kubernetes: a PVC, surviving a pod's
    deletion and re-creation); deleted with the session unless ``keep``."""
    placement: Placement | None = None
    secrets: dict[str, str] = {}
    """Environment variables of the sandbox whose values are masked as ``[secret:NAME]`` in every
    observation, chunk, log line and audit record (an encoding of the value, e.g. base64, is not)."""


class SessionRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `corral.ctl.close` and `corral.ctl.get` take."""

    session_id: str


class WorkerRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `corral.ctl.drain` takes: stop placing sessions on a worker (``undo`` re-opens it)."""

    worker_id: str
    undo: bool = False


class Empty(msgspec.Struct, frozen=True, kw_only=True):
    """What `corral.ctl.list` and `corral.ctl.workers` take (any fields are ignored)."""


class Reply(Event, frozen=True, kw_only=True, omit_defaults=False):
    """Root of every control reply (all fields always present, like observations)."""


PortPurpose = Literal["apps", "vscode"]


class PortInfo(Reply, frozen=True, kw_only=True, tag="port_info"):
    """The answer to ``corral.ctl.expose``: a port of the sandbox's loopback, reachable on the host.

    Connections to ``host:host_port`` are carried to ``127.0.0.1:port`` inside the sandbox through
    the worker's private channel to its executor; the sandbox needs no network for it.
    """

    session_id: str
    port: int
    host: str
    host_port: int
    url: str
    purpose: PortPurpose = "apps"


class VscodeInfo(Reply, frozen=True, kw_only=True, tag="vscode_info"):
    """The answer to ``corral.ctl.vscode``: a VS Code (code-server) on the session's workdir.

    ``url`` carries the per-session token (``?tkn=``); without it the server answers 403.
    """

    session_id: str
    url: str
    host: str
    host_port: int
    token: str
    workdir: str


class PortRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``corral.ctl.expose`` and ``corral.ctl.unexpose`` take: a TCP port of the sandbox's loopback."""

    session_id: str
    port: int


class PluginStatus(msgspec.Struct, frozen=True, kw_only=True):
    """An in-sandbox plugin a session asked for (``SessionSpec.plugins``) and where it stands."""

    name: str
    state: PluginState = "declared"
    """``declared``: asked for, not started (it starts on first use); ``failed`` has a ``reason``."""
    reason: str | None = None


class SessionInfo(Reply, frozen=True, kw_only=True, tag="session_info"):
    session_id: str
    worker_id: str
    backend: str
    status: SessionStatus
    created_at: float = 0.0
    labels: dict[str, str] = {}
    reason: str | None = None
    warm: bool = False
    """True when the sandbox came from a warm pool."""
    plugins: list[PluginStatus] = []
    ports: list[PortInfo] = []
    """Ports of the sandbox forwarded to the host (``corral.ctl.expose``)."""
    tenant: str = ""
    """The tenant whose client created the session (its subjects are ``<prefix>.t.<tenant>.session...``);
    empty for a session of the deployment's own clients."""


class SessionList(Reply, frozen=True, kw_only=True, tag="session_list"):
    sessions: list[SessionInfo]


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    worker_id: str
    backend: str
    capacity: int
    running: int = 0
    starting: int = 0
    draining: bool = False
    warm: int = 0
    """Prestarted sandboxes ready to be claimed."""
    images: list[str] = []
    """Sandbox images present on the worker's host (container backends)."""
    host: str = ""
    version: str = ""
    labels: dict[str, str] = {}
    seen_at: float = 0.0
    active: list[str] = []
    """Sessions busy since the last heartbeat (an action running or queued, output streamed): the
    controller's idle reaper counts that as activity."""


class WorkerList(Reply, frozen=True, kw_only=True, tag="worker_list"):
    workers: list[WorkerInfo]


class ErrorReply(Reply, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str


AnyReply = SessionInfo | SessionList | WorkerList | PortInfo | VscodeInfo | ErrorReply


class SandboxCreate(msgspec.Struct, frozen=True, kw_only=True):
    """Controller -> worker (``corral.worker.<wid>.create``): start a sandbox for a session."""

    session_id: str
    spec: SessionSpec
    tenant: str = ""
    """The session's tenant: its subjects are under ``<prefix>.t.<tenant>``."""
