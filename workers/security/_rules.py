"""The ``rules`` analyzer: TOML policy files of ``[[rules]]`` (``protocol.SecurityRule``), matched shell-aware.

Every condition a rule gives must hold for it to match; the finding is the matching rule the
policy acts on most strongly (``low`` when none matches, ``medium`` when the command could only
be read by the fallback tokenizer). Conditions:

* ``kind``: the action's kind, or several joined by ``|`` (``file_write|file_edit``). A
  ``file_edit`` that only views is a read: it is a ``file_read`` to the rules.
* ``command``: a regex searched in a ``cmd_run``'s command (an ``ipython_run``'s code) as written
  *and* in each line of its normal form (``_shell``: unquoted, unwrapped, one line per nested
  command), so ``'r''m' -rf /`` and ``bash -c "rm -rf /"`` are both searched as ``rm -rf /``.
* ``program`` (a regex matched against the whole program name) and ``args`` (searched in its
  arguments joined by spaces, as written and with paths normalised, ``/tmp/../`` -> ``/``): some
  simple command anywhere in the parsed command. With ``path``: one of that command's file
  arguments (or redirections) matches the glob.
* ``path``: a glob on a file action's path, resolved (``~`` and ``$HOME`` are a home directory,
  relative paths are under the workdir, ``..`` is normalised). On a ``cmd_run`` without
  ``program``: a file the command writes (``>``, ``>>``, ``tee``, ``cp``/``mv`` targets, ``dd
  of=``, ``touch``, ``rm``, ``chmod``, ``sed -i``, ...). Globs: ``*`` within a directory, ``**``
  across them (``/etc/**`` is ``/etc`` and everything under it), ``?``, ``[...]``, ``{a,b}``; ``~``
  at the start of a glob or an alternative is any home (``/root``, ``/home/*``, ``/workspace``).
* ``host``: a glob on the host of a ``browse_url``, of a ``goto(...)`` of ``browse_interactive``,
  or of a URL argument of a command (``curl http://169.254.169.254/``).

Rules are compiled once; an action is parsed once (and commands are cached by their text).
"""

from __future__ import annotations

import ast
import asyncio
import os
import posixpath
import re
import tomllib
from typing import Iterable
from urllib.parse import urlsplit

import msgspec

from protocol import (
    ACTION_KINDS,
    AnyAction,
    BrowseInteractive,
    BrowseUrl,
    CmdRun,
    FileEdit,
    FileRead,
    FileWrite,
    IPythonRun,
    Risk,
    SecurityRule,
)

from ..session import SessionContext
from ._analyzer import ANALYZERS, Analyzer, AnalyzerSetup
from ._policy import Finding, Policy
from ._shell import ShellFacts, quick, read_shell

DEFAULT_RULES_PATH = os.path.join(os.path.dirname(__file__), "default_rules.toml")
HOME = "/root"
"""Where ``~`` and ``$HOME`` in an action's path are put before matching (rules' ``~`` includes it)."""
DEFAULT_WORKDIR = "/workspace"
_FILE_KINDS = frozenset({"file_read", "file_write", "file_edit"})
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_GOTO = re.compile(r"""goto\(\s*(?:url\s*=\s*)?(['"])(.*?)\1""")


class RulesError(ValueError):
    """A rules file or rule that cannot be used; the message names the file and the rule."""


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """A ``SecurityRule``, compiled."""

    source: SecurityRule
    kinds: frozenset[str] | None
    command: re.Pattern[str] | None
    program: re.Pattern[str] | None
    args: re.Pattern[str] | None
    path: re.Pattern[str] | None
    host: re.Pattern[str] | None

    @property
    def risk(self) -> Risk:
        return self.source.risk

    def describe(self) -> str:
        rule = self.source
        what = rule.reason or "a rule matched"
        return f"{what} (rule {rule.name})" if rule.name else what


def home_pattern() -> str:
    homes = {"/root", "/workspace", os.path.expanduser("~")}
    return "(?:" + "|".join([re.escape(h.rstrip("/")) for h in sorted(homes) if h.startswith("/")] + ["/home/[^/]+"]) + ")"


def glob_regex(glob: str) -> re.Pattern[str]:
    """A path glob as a compiled regex (see the module's docstring for the syntax)."""
    out: list[str] = []
    i, n, braces = 0, len(glob), 0
    while i < n:
        c = glob[i]
        if c == "*" and glob.startswith("**", i):
            if glob.startswith("/", i + 2):
                out.append("(?:.*/)?")
                i += 3
                continue
            if out and out[-1] == "/":
                out[-1] = "(?:/.*)?"
            else:
                out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
                i = end
        elif c == "{":
            braces += 1
            out.append("(?:")
        elif c == "," and braces:
            out.append("|")
        elif c == "}" and braces:
            braces -= 1
            out.append(")")
        elif c == "~" and (i == 0 or glob[i - 1] in "{,"):
            out.append(home_pattern())
        else:
            out.append("/" if c == "/" else re.escape(c))
        i += 1
    if braces:
        raise RulesError(f"path glob {glob!r} has an unclosed '{{'")
    return re.compile("".join(out) + r"\Z")


def rule_problem(rule: SecurityRule) -> str | None:
    if rule.args and not rule.program:
        return "args applies to a program; name the program"
    if not (rule.command or rule.program or rule.path or rule.host or rule.kind):
        return "has no condition (kind, command, program, args, path or host)"
    if rule.kind:
        unknown = [k for k in rule.kind.split("|") if k.strip() not in ACTION_KINDS]
        if unknown:
            return f"kind {'|'.join(unknown)!r} is not an action kind ({', '.join(ACTION_KINDS)})"
    for name in ("command", "program", "args"):
        pattern = getattr(rule, name)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"{name} is not a regular expression: {exc}"
    return None


def compile_rule(rule: SecurityRule) -> Rule:
    problem = rule_problem(rule)
    if problem:
        raise RulesError(problem)
    return Rule(
        source=rule,
        kinds=frozenset(k.strip() for k in rule.kind.split("|")) if rule.kind else None,
        command=re.compile(rule.command) if rule.command else None,
        program=re.compile(rule.program) if rule.program else None,
        args=re.compile(rule.args) if rule.args else None,
        path=glob_regex(rule.path) if rule.path else None,
        host=glob_regex(rule.host.lower()) if rule.host else None,
    )


def compile_rules(rules: Iterable[SecurityRule], where: str) -> list[Rule]:
    compiled = []
    for n, rule in enumerate(rules):
        try:
            compiled.append(compile_rule(rule))
        except (RulesError, re.error) as exc:
            raise RulesError(f"{where}: rules[{n}]{' (' + rule.name + ')' if rule.name else ''} {exc}") from None
    return compiled


def load_rules_file(path: str) -> list[Rule]:
    """A TOML file of ``[[rules]]`` tables, compiled; any problem is a ``RulesError`` naming it."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file {path} is not TOML: {exc}") from None
    extra = set(data) - {"rules"}
    if extra:
        raise RulesError(f"rules file {path}: unknown top-level keys {sorted(extra)} (only [[rules]] tables)")
    try:
        rules = msgspec.convert(data.get("rules", []), list[SecurityRule])
    except msgspec.ValidationError as exc:
        raise RulesError(f"rules file {path}: {exc}") from None
    return compile_rules(rules, path)


# ---------------------------------------------------------------------------- facts of an action


class Facts(msgspec.Struct, kw_only=True):
    """What the rules look at in one action, read once."""

    kind: str
    text: str | None = None
    shell: ShellFacts | None = None
    paths: list[str] = []
    hosts: list[str] = []
    cwds: tuple[str, ...] = (DEFAULT_WORKDIR,)


def facts_of(action: AnyAction, workdir: str = DEFAULT_WORKDIR) -> Facts:
    kind = action.__struct_config__.tag
    workdir = workdir or DEFAULT_WORKDIR
    match action:
        case CmdRun():
            shell = read_shell(action.command)
            cwds = (action.cwd or workdir, HOME)
            return Facts(kind=kind, text=action.command, shell=shell, cwds=cwds, hosts=_hosts_in(shell))
        case IPythonRun():
            lines = _shell_lines(action.code)
            shell = read_shell(lines) if lines else None
            return Facts(kind=kind, text=action.code, shell=shell, cwds=(workdir, HOME),
                         hosts=_hosts_in(shell) if shell else [])
        case FileRead() | FileWrite():
            return Facts(kind=kind, paths=resolve(action.path, (workdir,)))
        case FileEdit():
            return Facts(kind="file_read" if action.command == "view" else kind, paths=resolve(action.path, (workdir,)))
        case BrowseUrl():
            return Facts(kind=kind, hosts=[h for h in (_host(action.url),) if h])
        case BrowseInteractive():
            return Facts(kind=kind, hosts=[h for url in _gotos(action.browser_actions) if (h := _host(url))])
        case _:
            return Facts(kind=kind)


def resolve(path: str, cwds: tuple[str, ...]) -> list[str]:
    """Where ``path`` may point: ``~``/``$HOME`` at the home, relative ones under each of ``cwds``, normalised."""
    if path.startswith("~"):
        user, _, rest = path[1:].partition("/")
        path = (HOME if user in ("", "root") else f"/home/{user}") + ("/" + rest if rest else "")
    else:
        for var in ("$HOME", "${HOME}"):
            if path == var or path.startswith(var + "/"):
                path = HOME + path[len(var):]
                break
    if path.startswith("/"):
        return [_normal(path)]
    return [_normal(posixpath.join(cwd, path)) for cwd in cwds]


def _normal(path: str) -> str:
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _norm_arg(arg: str) -> str:
    if arg.startswith("/"):
        return _normal(arg)
    for home in ("~", "$HOME", "${HOME}"):
        if arg.startswith(home + "/"):
            rest = _normal("/" + arg[len(home) + 1:])
            return home + ("" if rest == "/" else rest)
    return arg


def _host(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


def _hosts_in(shell: ShellFacts) -> list[str]:
    return [h for c in shell.commands for a in c.args if _URL.match(a) and (h := _host(a))]


def _gotos(script: str) -> list[str]:
    """The URLs of a browser script's ``goto(...)`` calls (parsed; a regex when it does not parse)."""
    try:
        tree = ast.parse(script)
    except (SyntaxError, ValueError):
        return [m.group(2) for m in _GOTO.finditer(script)]
    urls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("goto", "new_tab"):
            values = [*node.args, *(k.value for k in node.keywords if k.arg == "url")]
            urls += [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return urls


def _shell_lines(code: str) -> str:
    """The shell a cell runs: ``!cmd`` lines and ``%%bash``/``%%sh`` bodies."""
    lines = code.splitlines()
    if lines and lines[0].strip() in ("%%bash", "%%sh", "%%script bash", "%%script sh"):
        return "\n".join(lines[1:])
    return "\n".join(s[1:] for line in lines if (s := line.strip()).startswith("!") and not s.startswith("!="))


# ---------------------------------------------------------------------------- matching


def matches(rule: Rule, facts: Facts) -> bool:
    if rule.kinds is not None and facts.kind not in rule.kinds:
        return False
    if rule.command is not None:
        lines = facts.shell.lines if facts.shell else ()
        if facts.text is None or not (rule.command.search(facts.text) or any(rule.command.search(l) for l in lines)):
            return False
    if rule.program is not None:
        if facts.shell is None or not any(_command_matches(rule, c, facts.cwds) for c in facts.shell.commands):
            return False
    elif rule.path is not None:
        if facts.kind in _FILE_KINDS:
            candidates: Iterable[str] = facts.paths
        elif facts.shell is not None:
            candidates = [p for w in facts.shell.writes for p in resolve(w, facts.cwds)]
        else:
            return False
        if not any(rule.path.match(p) for p in candidates):
            return False
    if rule.host is not None and not any(rule.host.match(h.lower()) for h in facts.hosts):
        return False
    return True


def _command_matches(rule: Rule, command: object, cwds: tuple[str, ...]) -> bool:
    assert rule.program is not None
    if not rule.program.fullmatch(command.program):  # type: ignore[attr-defined]
        return False
    args: tuple[str, ...] = command.args  # type: ignore[attr-defined]
    if rule.args is not None:
        joined = " ".join(args)
        if not rule.args.search(joined) and not rule.args.search(" ".join(_norm_arg(a) for a in args)):
            return False
    if rule.path is not None:
        paths: tuple[str, ...] = command.paths  # type: ignore[attr-defined]
        return any(rule.path.match(p) for word in paths for p in resolve(word, cwds))
    return True


class RuleSet:
    """Compiled rules, indexed by the action kinds they can apply to."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._by_kind: dict[str, list[Rule]] = {}
        for kind in ACTION_KINDS:
            self._by_kind[kind] = [r for r in rules if r.kinds is None or kind in r.kinds]

    def __len__(self) -> int:
        return len(self.rules)

    def __add__(self, other: list[Rule]) -> RuleSet:
        return RuleSet(self.rules + other) if other else self

    def matching(self, facts: Facts) -> list[Rule]:
        return [rule for rule in self._by_kind.get(facts.kind, self.rules) if matches(rule, facts)]

    def finding(self, facts: Facts, policy: Policy, analyzer: str = "rules") -> Finding:
        found = [Finding(risk=r.risk, reason=r.describe(), analyzer=analyzer) for r in self.matching(facts)]
        if facts.shell is not None and not facts.shell.parsed:
            found.append(Finding(risk="medium", reason=f"the command could not be fully parsed: {facts.shell.note}",
                                 analyzer=analyzer))
        return policy.worst(found) if found else Finding(risk="low", reason="no rule matched", analyzer=analyzer)


class RulesAnalyzer(Analyzer):
    """The deployment's rules (the default file, its rules files and inline rules) plus the session's."""

    name = "rules"

    def __init__(self, setup: AnalyzerSetup) -> None:
        super().__init__(setup)
        self._rules = setup.security.rules + compile_rules(setup.spec.rules, "security.rules")
        self._workdir = setup.session.handle.workdir or DEFAULT_WORKDIR

    async def analyze(self, action: AnyAction, ctx: SessionContext) -> Finding:
        text = action.command if isinstance(action, CmdRun) else action.code if isinstance(action, IPythonRun) else None
        if text is not None and not quick(text):  # bashlex is slow on long text: keep it off the event loop
            facts = await asyncio.to_thread(facts_of, action, self._workdir)
        else:
            facts = facts_of(action, self._workdir)
        return self._rules.finding(facts, self.setup.policy)


ANALYZERS.register("rules", RulesAnalyzer)
