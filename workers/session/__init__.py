"""A session on a worker: its runner, and the seams its actions pass through (handlers, gates)."""

from ._gates import ALLOW, GATES, Allow, Deny, Gate, GateChain, Hold, Verdict, summary_of
from ._handlers import HANDLERS, Emit, ExecutorHandler, Handler, SandboxDied, SessionContext
from ._runner import RunnerConfig, SessionRunner
from . import _mcp  # noqa: F401  (registers the `mcp` handler)

__all__ = [
    "ALLOW", "GATES", "HANDLERS", "Allow", "Deny", "Emit", "ExecutorHandler", "Gate", "GateChain", "Handler", "Hold",
    "RunnerConfig", "SandboxDied", "SessionContext", "SessionRunner", "Verdict", "summary_of",
]
