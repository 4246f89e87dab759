"""corral's public wire contract and client SDK.

Imports nothing else of corral's: any program can depend on this package alone.
"""

from . import _errors as codes
from ._codec import (
    JSON_HEADERS,
    ActionDecodeError,
    decode_action,
    decode_as,
    decode_observation,
    decode_reply,
    encode,
    headers_for,
    wants_json,
)
from ._creds import CREDS_ENV, Credentials, CredentialsError, credentials_from, encode_credentials, load_credentials
from ._errors import ConnectionLost, CorralError, RequestError
from ._events import (
    ACTION_KINDS,
    INTERIM_KINDS,
    OBSERVATION_KINDS,
    Action,
    ActionHeld,
    ConfirmationRequired,
    Decision,
    Rejected,
    Risk,
    SecurityPolicy,
    SecurityRule,
    SecuritySpec,
    AnyAction,
    AnyObservation,
    AnyReply,
    BrowseInteractive,
    BrowseUrl,
    BrowserOutput,
    CmdChunk,
    CmdOutput,
    CmdRun,
    CmdStatus,
    Confirm,
    ConfirmResult,
    Empty,
    Error,
    ErrorReply,
    Event,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    FileWrite,
    FileWritten,
    IPythonOutput,
    IPythonRun,
    IPythonStatus,
    McpAudio,
    McpCall,
    McpContent,
    McpImage,
    McpList,
    McpResource,
    McpResourceLink,
    McpResult,
    McpServerProblem,
    McpText,
    McpTool,
    McpToolAnnotations,
    McpTools,
    Mount,
    Observation,
    PluginState,
    PluginStatus,
    Placement,
    PortInfo,
    PortPurpose,
    PortRef,
    Reply,
    Resources,
    SandboxCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SessionSpec,
    Toleration,
    VscodeInfo,
    WorkerInfo,
    WorkerList,
    WorkerRef,
)
from ._ids import new_id
from ._registry import Registry, UnknownName
from ._schema import json_schema
from ._subjects import DEFAULT_PREFIX, KV_SESSIONS, KV_WORKERS, STREAM, TENANT_NAME, Subjects
from ._validate import MAX_ID_LENGTH, Invalid, check_action, spec_problem, valid_id

__all__ = [name for name in dir() if not name.startswith("_")] + ["Client", "Session", "connect_nats", "replay", "start_at", "unsubscribe_all"]


def __getattr__(name: str) -> object:
    # The SDK pulls in nats-py (and aiohttp); the in-sandbox executor imports this package
    # too and must start fast, so the client is loaded only when asked for.
    if name in ("Client", "Session", "replay", "start_at"):
        from . import _client

        return getattr(_client, name)
    if name in ("connect_nats", "unsubscribe_all"):
        from . import _connect

        return getattr(_connect, name)
    raise AttributeError(f"module 'protocol' has no attribute {name!r}")
