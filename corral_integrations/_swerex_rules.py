"""How ``corral_integrations.swerex`` reproduces SWE-ReX's LocalRuntime: its syntax check, its
``check`` rule, ``expect`` matching, the ``execute`` script, and the exceptions corral's errors become."""

from __future__ import annotations

import asyncio
import errno
import io
import shlex
import tarfile
import time
from pathlib import Path
from typing import Any

import bashlex
from swerex.exceptions import BashIncorrectSyntaxError, NoExitCodeError, NonZeroExitCodeError, SwerexException
from swerex.runtime.abstract import BashAction, BashObservation, Command

from protocol import Error, codes

PS1 = "SHELLPS1PREFIX"
"""What ``BashObservation.expect_string`` says when the shell prompt (not an ``expect``) ended a
command: the prompt LocalRuntime sets, so code comparing against it keeps working."""
INTERACTIVE_QUIET_S = 0.2
"""An interactive program that printed nothing for this long is checked against ``expect``."""
INLINE_EXEC_BYTES = 6_000
"""``execute`` output up to this size comes back in the command's own answer; more is read as files."""
KILL_JOB = ("__swx_p=$(jobs -p %1); kill -9 %1; for __swx_i in $(seq 100); do kill -0 $__swx_p 2>/dev/null || break; "
            "sleep 0.01; done; jobs")
"""``kill -9 %1`` and the job's notice (``Killed``) in this answer rather than after the next command."""


class CorralActionError(SwerexException):
    """corral answered an action with an ``error`` observation (no SWE-ReX exception fits)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.extra_info: dict[str, Any] = {"code": code}


def _bashlex_accepts(command: str) -> bool:
    if not command.strip():
        return True
    try:
        bashlex.parse(command)
    except Exception:  # noqa: BLE001 - bashlex fails in many ways, each meaning "ask bash"
        return False
    return True


async def check_bash_command(command: str) -> None:
    """Raise ``BashIncorrectSyntaxError`` where LocalRuntime does (``bash -n`` rejects the command).

    ``bash -n`` costs a process spawn (about 6 ms here, most of a round trip), so bashlex (SWE-ReX's
    own parser dependency) is asked first: what it parses is run, what it cannot parse (it also
    rejects valid bash such as ``A=()``) goes to ``bash -n``, which decides."""
    short = len(command) < 256
    if _bashlex_accepts(command) if short else await asyncio.to_thread(_bashlex_accepts, command):
        return
    proc = await asyncio.create_subprocess_exec(
        "bash", "-n", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(command.encode() + b"\n")
    if proc.returncode == 0:
        return
    stdout, stderr = out.decode(errors="backslashreplace"), err.decode(errors="backslashreplace")
    msg = (f"Error (exit code {proc.returncode}) while checking bash command \n{command!r}\n"
           f"---- Stderr ----\n{stderr}\n---- Stdout ----\n{stdout}")
    raise BashIncorrectSyntaxError(msg, extra_info={"bash_stdout": stdout, "bash_stderr": stderr})


def apply_check(action: BashAction, output: str, exit_code: int | None, *, expect_string: str = PS1) -> BashObservation:
    """Apply ``check`` as LocalRuntime does."""
    if action.check == "ignore":
        exit_code = None
    elif action.check == "raise" and exit_code is None:
        raise NoExitCodeError(f"no exit code for command {action.command!r}")
    elif action.check == "raise" and exit_code != 0:
        msg = f"Command {action.command!r} failed with exit code {exit_code}. Here is the output:\n{output!r}"
        raise NonZeroExitCodeError(f"{action.error_msg}: {msg}" if action.error_msg else msg)
    return BashObservation(output=output, exit_code=exit_code, expect_string=expect_string)


def timeout_message(action: BashAction) -> str:
    return f"timeout after {action.timeout} seconds while running command {action.command!r}"


def quiet_s(deadline: float | None) -> float:
    if deadline is None:
        return INTERACTIVE_QUIET_S
    return max(min(INTERACTIVE_QUIET_S, deadline - time.monotonic()), 0.01)


def first_match(text: str, expect: list[str]) -> tuple[int, str] | None:
    """The earliest occurrence of any of ``expect`` in ``text`` (pexpect's rule), as (index, string)."""
    hits = [(i, s) for s in expect if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def exec_script(shell: str, command: Command) -> str:
    """A subshell running the command with stdout/stderr captured to files. It answers five lines:
    the exit code; ``nocwd`` / ``noexe`` when ``cwd`` or the program does not exist (where
    ``subprocess.run`` raises ``FileNotFoundError``), else empty; ``inline`` and the two outputs
    base64-encoded, or, when they are large, the directory holding them and two empty lines."""
    if command.shell:
        argv = ["/bin/sh", "-c", command.command if isinstance(command.command, str) else shlex.join(command.command)]
    else:
        argv = [command.command] if isinstance(command.command, str) else list(command.command)
    checks = []
    if command.cwd:
        checks.append(f'cd -- {shlex.quote(command.cwd)} 2>/dev/null || {{ echo nocwd > "$__swx_d/why"; exit 1; }}')
    if not command.shell and argv:
        checks.append(f'command -v -- {shlex.quote(argv[0])} > /dev/null || {{ echo noexe > "$__swx_d/why"; exit 1; }}')
    if command.env is not None:
        argv = ["env", "-i", "--", *(f"{k}={v}" for k, v in command.env.items()), *argv]
    err = "&1" if command.merge_output_streams else '"$__swx_d/e"'
    d = f"${{TMPDIR:-/tmp}}/.corral-swerex-{shell}"
    return (
        f'__swx_d="{d}"; rm -rf -- "$__swx_d"; mkdir -p -- "$__swx_d" && : > "$__swx_d/e" && : > "$__swx_d/why"; '
        f'( {"; ".join([*checks, ""])}exec {shlex.join(argv)} ) < /dev/null > "$__swx_d/o" 2>{err}; __swx_rc=$?; '
        'echo $__swx_rc; printf "%s\\n" "$(cat "$__swx_d/why")"; '
        f'if [ $(( $(wc -c < "$__swx_d/o") + $(wc -c < "$__swx_d/e") )) -le {INLINE_EXEC_BYTES} ]; then '
        f'echo inline; base64 -w0 < "$__swx_d/o"; echo; base64 -w0 < "$__swx_d/e"; echo; rm -rf -- "$__swx_d"; '
        f'else echo "$__swx_d"; echo; echo; fi'
    )


def tar_gz(source: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for child in sorted(source.iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


def file_error(obs: Error, path: str) -> Exception:
    """The builtin exception Path.read_text / write_text would raise, where there is one."""
    match obs.code:
        case codes.FILE_NOT_FOUND:
            return FileNotFoundError(errno.ENOENT, obs.message, path)
        case codes.IS_A_DIRECTORY:
            return IsADirectoryError(errno.EISDIR, obs.message, path)
        case codes.PERMISSION_DENIED:
            return PermissionError(errno.EACCES, obs.message, path)
        case _:
            return CorralActionError(obs.code, obs.message)
