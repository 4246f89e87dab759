"""OpenHands' bash semantics on corral's named shells: which corral ``cmd_run`` a ``CmdRunAction``
becomes, and how its ``cmd_output`` reads as the ``CmdOutputObservation`` OpenHands' agents expect.

OpenHands (``openhands/runtime/utils/bash.py``) waits for a command until it completes, until it
has printed nothing for ``NO_CHANGE_TIMEOUT_SECONDS`` (not for a ``blocking`` action) or until its
hard timeout has passed; in the last two cases it answers exit code -1 and leaves the command
running for the agent to wait on (an empty command), feed (``is_input``) or interrupt (``C-c``).
corral's shell has the same "still running" answer after a quiet period (its soft timeout) and a
hard timeout that stops the command. So: the quiet period is OpenHands' no-change timeout, or the
action's own timeout when that is shorter or the action is ``blocking``; corral's hard timeout is
``HARD_STOP_FACTOR`` times the action's timeout, reached only by a command that never goes quiet.
"""

from __future__ import annotations

from typing import Literal

from openhands.events.action import CmdRunAction
from openhands.events.observation import CmdOutputMetadata, CmdOutputObservation, ErrorObservation
from openhands.runtime.utils.bash import split_bash_commands
from openhands.runtime.utils.bash_constants import TIMEOUT_MESSAGE_TEMPLATE

from protocol import CmdOutput, CmdRun

HARD_STOP_FACTOR = 2.0
"""corral stops (C-c, then SIGKILL) a command still printing at this many times its timeout."""
CONTINUED = "[Below is the output of the previous command.]\n"
Bound = Literal["no_change", "timeout"]


class BashState:
    """What OpenHands' bash session remembers between actions: whether a command is still running."""

    def __init__(self, no_change_timeout_s: float) -> None:
        self.no_change_timeout_s = no_change_timeout_s
        self.running = False
        self.cwd: str | None = None


def refuse(action: CmdRunAction, state: BashState) -> CmdOutputObservation | ErrorObservation | None:
    """The answer OpenHands gives without touching the shell, or None when the action runs."""
    command = action.command.strip()
    if not state.running and command == "":
        return CmdOutputObservation(content="ERROR: No previous running command to retrieve logs from.",
                                    command="", metadata=CmdOutputMetadata())
    if not state.running and action.is_input:
        return CmdOutputObservation(content="ERROR: No previous running command to interact with.",
                                    command="", metadata=CmdOutputMetadata())
    if action.is_input or command == "":
        return None
    parts = split_bash_commands(command)
    if len(parts) > 1:
        listed = "\n".join(f"({i}) {part}" for i, part in enumerate(parts, 1))
        return ErrorObservation(
            "ERROR: Cannot execute multiple commands at once.\n"
            "Please run each command separately OR chain them into a single command via && or ;\n"
            f"Provided commands:\n{listed}")
    return None


def to_cmd_run(action: CmdRunAction, state: BashState, timeout_s: float) -> tuple[CmdRun, Bound]:
    """The corral action for an OpenHands command (or input, or empty wait), and which bound its
    quiet period is (it decides the text of a "still running" answer)."""
    command = action.command.strip()
    if action.blocking or timeout_s <= state.no_change_timeout_s:
        quiet_s, bound = timeout_s, "timeout"
    else:
        quiet_s, bound = state.no_change_timeout_s, "no_change"
    is_input = action.is_input or command == ""
    if action.is_static:
        # A command of its own, in a shell of its own (OpenHands: a separate process in ``cwd``).
        return CmdRun(command=command, shell="static", cwd=action.cwd, soft_timeout_s=quiet_s,
                      timeout_s=timeout_s * HARD_STOP_FACTOR), bound
    return CmdRun(command=command, is_input=is_input, soft_timeout_s=quiet_s,
                  timeout_s=timeout_s * HARD_STOP_FACTOR), bound


def _is_key(command: str) -> bool:
    return command.startswith("C-") and len(command) == 3


def to_observation(action: CmdRunAction, out: CmdOutput, state: BashState, bound: Bound,
                   timeout_s: float) -> CmdOutputObservation:
    """``out`` as OpenHands' bash session would have answered ``action``; updates ``state``."""
    command = action.command.strip()
    was_running = state.running and not action.is_static
    if out.working_dir and not action.is_static:
        state.cwd = out.working_dir
    meta = CmdOutputMetadata(pid=out.pid or -1)
    content = out.content.rstrip()
    if out.status in ("completed", "interrupted"):
        meta.exit_code = out.exit_code if out.exit_code is not None else -1
        meta.working_dir = out.working_dir
        key = f" CTRL+{command[-1].upper()} was sent." if action.is_input and _is_key(command) else ""
        meta.suffix = f"\n[The command completed with exit code {meta.exit_code}.{key}]"
        if out.hint:  # e.g. the shell exited, or an earlier command's output comes first
            meta.suffix += f"\n[{out.hint}]"
        state.running = state.running and action.is_static
    elif out.status == "running":
        meta.prefix = CONTINUED if was_running else ""
        if bound == "no_change":
            meta.suffix = (f"\n[The command has no new output after {state.no_change_timeout_s:g} seconds. "
                           f"{TIMEOUT_MESSAGE_TEMPLATE}]")
        else:
            meta.suffix = f"\n[The command timed out after {timeout_s} seconds. {TIMEOUT_MESSAGE_TEMPLATE}]"
        state.running = not action.is_static or state.running
    elif out.status == "not_executed":
        meta.prefix = CONTINUED if was_running else ""
        meta.suffix = (
            f'\n[Your command "{command}" is NOT executed. The previous command is still running - You CANNOT '
            "send new commands until the previous command is completed. By setting `is_input` to `true`, you "
            f"can interact with the current process: {TIMEOUT_MESSAGE_TEMPLATE}]")
    elif out.status == "hard_timeout":
        meta.exit_code = out.exit_code if out.exit_code is not None else -1
        meta.working_dir = out.working_dir
        meta.suffix = (f"\n[The command kept printing past {timeout_s * HARD_STOP_FACTOR:g} seconds "
                       f"({HARD_STOP_FACTOR:g} times its {timeout_s} second timeout) and was stopped: {out.hint}]")
        state.running = state.running and action.is_static
    else:  # failed: the shell could not run it, or died under it
        meta.exit_code = out.exit_code if out.exit_code is not None else -1
        meta.working_dir = out.working_dir
        meta.suffix = f"\n[The command failed: {out.hint or out.content}]"
        state.running = state.running and action.is_static
    return CmdOutputObservation(content=content, command=command, metadata=meta,
                                hidden=getattr(action, "hidden", False))
