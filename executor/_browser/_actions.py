"""BrowserGym's action language, parsed without running anything.

A script is one call per line: ``click("12")``, ``fill("7", "Ada")``, ``goto("http://...")``. It is
read with ``ast.parse`` and walked: each statement must be a bare call of a known action whose
arguments are literals (``ast.literal_eval`` of each argument node, never ``eval`` of the script),
bound to that action's signature and checked for type. Anything else (an attribute, a name, an
import, an unknown function, a missing or extra argument) is a ``ScriptError`` that names the line,
and a script with any such line runs no step at all.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import msgspec


class ScriptError(Exception):
    """A script that does not parse as actions; nothing of it ran."""


class Step(msgspec.Struct, frozen=True):
    name: str
    args: dict[str, Any]
    """The arguments bound to the action's parameters (defaults filled in)."""
    line: int
    source: str
    """The step's own text, for the answer's ``last_browser_action``."""


_Bid = str
_Files = str | list[str]
_Options = str | list[str]
_Modifiers = list[str]


def _signature(**params: tuple[Any, Any]) -> inspect.Signature:
    """A signature of positional-or-keyword parameters: name -> (type, default or ``inspect._empty``)."""
    return inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                                annotation=kind) for name, (kind, default) in params.items()])


_REQUIRED = inspect.Parameter.empty
SIGNATURES: dict[str, inspect.Signature] = {
    "goto": _signature(url=(str, _REQUIRED)),
    "go_back": _signature(),
    "go_forward": _signature(),
    "noop": _signature(wait_ms=(float, 1000)),
    "scroll": _signature(delta_x=(float, _REQUIRED), delta_y=(float, _REQUIRED)),
    "fill": _signature(bid=(_Bid, _REQUIRED), value=(str, _REQUIRED)),
    "clear": _signature(bid=(_Bid, _REQUIRED)),
    "select_option": _signature(bid=(_Bid, _REQUIRED), options=(_Options, _REQUIRED)),
    "click": _signature(bid=(_Bid, _REQUIRED), button=(str, "left"), modifiers=(_Modifiers, [])),
    "dblclick": _signature(bid=(_Bid, _REQUIRED), button=(str, "left"), modifiers=(_Modifiers, [])),
    "hover": _signature(bid=(_Bid, _REQUIRED)),
    "focus": _signature(bid=(_Bid, _REQUIRED)),
    "press": _signature(bid=(_Bid, _REQUIRED), key_comb=(str, _REQUIRED)),
    "drag_and_drop": _signature(from_bid=(_Bid, _REQUIRED), to_bid=(_Bid, _REQUIRED)),
    "upload_file": _signature(bid=(_Bid, _REQUIRED), file=(_Files, _REQUIRED)),
    "new_tab": _signature(),
    "tab_focus": _signature(index=(int, _REQUIRED)),
    "tab_close": _signature(),
}
BUTTONS = ("left", "middle", "right")
MODIFIERS = ("Alt", "Control", "ControlOrMeta", "Meta", "Shift")
MAX_STEPS = 100


def parse(script: str) -> list[Step]:
    """The steps of ``script``, in order; ``ScriptError`` (naming the line) for anything but known calls."""
    try:
        tree = ast.parse(script, mode="exec")
    except SyntaxError as exc:
        raise ScriptError(f"line {exc.lineno}: not valid Python call syntax: {exc.msg}") from None
    lines = script.splitlines()
    steps = [_step(node, lines) for node in tree.body]
    if not steps:
        raise ScriptError("no action: write one call per line, e.g. click(\"12\")")
    if len(steps) > MAX_STEPS:
        raise ScriptError(f"{len(steps)} actions: at most {MAX_STEPS} run in one browse_interactive")
    return steps


def _step(node: ast.stmt, lines: list[str]) -> Step:
    line = node.lineno
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        raise ScriptError(f"line {line}: only calls of browser actions are allowed, one per line")
    call = node.value
    if not isinstance(call.func, ast.Name):
        raise ScriptError(f"line {line}: call an action by its plain name (one of {', '.join(SIGNATURES)})")
    name = call.func.id
    signature = SIGNATURES.get(name)
    if signature is None:
        raise ScriptError(f"line {line}: unknown action {name!r} (known: {', '.join(SIGNATURES)})")
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        raise ScriptError(f"line {line}: {name}() takes no *args or **kwargs")
    args = [_literal(a, name, line) for a in call.args]
    kwargs = {k.arg: _literal(k.value, name, line) for k in call.keywords if k.arg is not None}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ScriptError(f"line {line}: {name}{signature}: {exc}") from None
    bound.apply_defaults()
    checked = {p: _check(signature.parameters[p].annotation, v, name, p, line) for p, v in bound.arguments.items()}
    _check_choices(name, checked, line)
    source = ast.get_source_segment("\n".join(lines), node) or name
    return Step(name=name, args=checked, line=line, source=source)


def _literal(node: ast.expr, name: str, line: int) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ScriptError(f"line {line}: the arguments of {name}() must be literals (strings, numbers, lists), "
                          f"not {ast.unparse(node)[:80]!r}") from None


def _check(kind: Any, value: Any, name: str, param: str, line: int) -> Any:
    """``value`` as the parameter's type (a bid may be written as a number), or ScriptError."""
    if kind is _Bid and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind in (_Files, _Options) and (isinstance(value, str) or _strings(value)):
        return value
    if kind is _Modifiers and _strings(value):
        return list(value)
    wanted = {_Bid: "a string", float: "a number", int: "an integer", _Files: "a string or a list of strings",
              _Modifiers: "a list of strings"}.get(kind, "a string")
    raise ScriptError(f"line {line}: {name}() argument {param!r} must be {wanted}, not {value!r}"[:300])


def _strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_choices(name: str, args: dict[str, Any], line: int) -> None:
    if "button" in args and args["button"] not in BUTTONS:
        raise ScriptError(f"line {line}: {name}() button must be one of {', '.join(BUTTONS)}")
    bad = [m for m in args.get("modifiers", []) if m not in MODIFIERS]
    if bad:
        raise ScriptError(f"line {line}: {name}() modifiers must be among {', '.join(MODIFIERS)}, not {bad[0]!r}")
    if name == "noop" and not 0 <= args["wait_ms"] <= 600_000:
        raise ScriptError(f"line {line}: noop() wait_ms must be between 0 and 600000")
