"""The MCP bridge: corral sessions call the tools of MCP servers (stdio ones run in the sandbox).

``actors`` never imports ``workers`` or ``executor``: a stdio server's pipe comes from the host
(the worker) through a ``StdioOpener``. The MCP SDK is imported on first use, so a host without the
``mcp`` extra can still parse and check configs.
"""

from ._bridge import McpBridge
from ._config import (
    DEFAULT_TIMEOUT_S,
    ENV_VAR,
    MCPConfig,
    McpConfigError,
    ShttpServer,
    SseServer,
    StdioServer,
    host_config,
    load_env,
    load_file,
    merge,
    parse,
    session_config,
)
from ._conn import BridgeError
from ._transport import StdioOpener, StdioPipe

__all__ = [
    "DEFAULT_TIMEOUT_S", "ENV_VAR", "BridgeError", "MCPConfig", "McpBridge", "McpConfigError", "ShttpServer",
    "SseServer", "StdioOpener", "StdioPipe", "StdioServer", "host_config", "load_env", "load_file", "merge", "parse",
    "session_config",
]
