"""The MCP bridge: corral sessions call the tools of MCP servers (stdio ones run in the sandbox).

``actors`` never imports ``workers`` or ``executor``: a stdio server's pipe comes from the host
(the worker) through a ``StdioOpener``. The MCP SDK is imported on first use, so a host without the
``mcp`` extra can still parse and check configs.
"""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ._bridge import McpBridge
    from ._conn import BridgeError
    from ._transport import StdioOpener, StdioPipe

_LAZY = {"McpBridge": "_bridge", "BridgeError": "_conn", "StdioOpener": "_transport", "StdioPipe": "_transport"}


def __getattr__(name: str) -> object:
    # The bridge, its connections and transports import anyio (and the SDK on first use): only a
    # worker that hosts a bridge loads them, so one without the ``mcp`` extra starts and checks configs.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_TIMEOUT_S", "ENV_VAR", "BridgeError", "MCPConfig", "McpBridge", "McpConfigError", "ShttpServer",
    "SseServer", "StdioOpener", "StdioPipe", "StdioServer", "host_config", "load_env", "load_file", "merge", "parse",
    "session_config",
]
