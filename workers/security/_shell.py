"""Shell-aware reading of a command: every simple command it would run, the files it writes, a normal form.

``read_shell("cd /; X=rm; sudo \\\\$X -rf /*")`` finds ``cd``, ``sudo`` and ``rm -rf /*``. The parse
goes through pipelines, lists (``;``, ``&&``, ``||``, ``&``), ``$(...)``, backticks, process
substitutions, subshells, groups, ``if``/``for``/``while`` bodies, function bodies, the strings
of ``bash -c``/``sh -c``/``su -c``/``eval``/``watch``/``env -S``, shell here-documents and
here-strings, and wrappers (``sudo``, ``env``, ``nohup``, ``time``, ``command``, ``exec``, ``nice``,
``timeout``, ``xargs``, ``find -exec``, ...). Words are normalised as the shell would see them:
quotes and backslashes removed (``'r''m'``, ``\\\\rm`` and ``r\\\\m`` are ``rm``), ANSI-C ``$'\\\\x72m'``
decoded, a program's directory dropped (``/bin/rm`` is ``rm``), a variable assigned earlier in the
same command substituted when it is the program (``X=rm; $X``).

``bashlex`` parses; what it cannot parse (``[[ ]]``, ``$(( ))``, ``case``, broken quoting) is read
by a conservative tokenizer instead, which over-approximates: every segment between operators is
a command, substitutions are read as commands of their own. Nothing here raises on any input.

``lines`` is the normal form that ``command`` regexes also search: one line per list (the top
level, every substitution, every nested shell string), each simple command as its unwrapped
program and unquoted arguments, pipes and operators kept; a shell or interpreter fed by a
substitution (``sh -c "$(curl ...)"``, ``bash <(curl ...)``) adds ``<inner> | sh``.
"""

from __future__ import annotations

import codecs
import re
import warnings

import bashlex
import msgspec

MAX_DEPTH = 8
"""Nested shell strings read at most this deep (``bash -c "bash -c '...'"``)."""
MAX_PARSE_CHARS = 16_384
"""Longer commands (a here-document writing a big file) go to the linear tokenizer: bashlex is slow."""
CACHE_SIZE = 4096

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "fish", "busybox-sh"})
INTERPRETERS = SHELLS | frozenset({"python", "python2", "python3", "perl", "ruby", "node", "php", "lua", "source", ".", "eval"})
_SIMPLE = re.compile(r"[A-Za-z0-9_./:=,@%+\- ]+")
"""Commands of plain words only (no quotes, expansions, globs, operators): split on spaces, exactly."""
_TOKENIZABLE = re.compile(r"[^$`(){}]*")
"""Commands without expansions, substitutions, subshells, groups or functions (and no here-document):
the tokenizer reads them as bashlex would, some ten times faster."""
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_REDIRECT_WRITES = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>"})
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in", "case", "esac",
                       "select", "function", "time", "!", "{", "}", "coproc"})


class Simple(msgspec.Struct, frozen=True):
    """One simple command: its program (normalised) and arguments (unquoted), and the words that may
    be files it touches (arguments that are not options, redirection targets)."""

    program: str
    args: tuple[str, ...]
    paths: tuple[str, ...]


class ShellFacts(msgspec.Struct, frozen=True):
    commands: tuple[Simple, ...]
    writes: tuple[str, ...]
    """Files the command writes: output redirections, and the targets of tee, cp, mv, dd of=, ..."""
    lines: tuple[str, ...]
    parsed: bool
    """False when some part could only be read by the fallback tokenizer."""
    note: str = ""


_cache: dict[str, ShellFacts] = {}


def read_shell(text: str) -> ShellFacts:
    """Everything the rules need to know of ``text`` as a shell command (cached: agents repeat)."""
    facts = _cache.get(text)
    if facts is not None:
        return facts
    reader = _Reader()
    try:
        reader.read(text, 0)
    except RecursionError:
        reader.parsed, reader.note = False, "the command is nested too deeply to read"
    facts = ShellFacts(commands=tuple(reader.commands), writes=tuple(reader.writes), lines=tuple(reader.lines),
                       parsed=reader.parsed, note=reader.note)
    if len(_cache) >= CACHE_SIZE:
        try:
            del _cache[next(iter(_cache))]  # the oldest; threads may race here, the cache is only a cache
        except (KeyError, RuntimeError, StopIteration):
            pass
    _cache[text] = facts
    return facts


def clear_cache() -> None:
    """Forget every command read (benchmarks time first sight with it)."""
    _cache.clear()


def quick(text: str) -> bool:
    """Is ``text`` read in microseconds (cached, plain words, or tokenizable and short)? Otherwise
    bashlex reads it (~0.2-1 ms, more for long text): callers on an event loop use a thread."""
    return text in _cache or bool(_SIMPLE.fullmatch(text)) or (
        len(text) <= 4096 and "<<" not in text and bool(_TOKENIZABLE.fullmatch(text)))


def program_name(word: str) -> str:
    """``\\\\rm`` -> ``rm``, ``/usr/bin/rm`` -> ``rm``."""
    word = word.lstrip("\\")
    return word.rsplit("/", 1)[-1] if "/" in word and "$(" not in word and "`" not in word else word


def unquote(raw: str) -> str:
    """A shell word as the program receives it (quotes and escapes removed, ``$'...'`` decoded);
    expansions are left as written."""
    if not any(c in raw for c in "'\"\\"):
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\\":
            if i + 1 < n and raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
        elif c == "'":
            end = raw.find("'", i + 1)
            end = n if end < 0 else end
            out.append(raw[i + 1:end])
            i = end + 1
        elif c == "$" and raw.startswith("$'", i):
            end = i + 2
            while end < n and raw[end] != "'":
                end += 2 if raw[end] == "\\" else 1
            out.append(_ansi_c(raw[i + 2:end]))
            i = end + 1
        elif c == '"' or (c == "$" and raw.startswith('$"', i)):
            i += 1 if c == '"' else 2
            while i < n and raw[i] != '"':
                if raw[i] == "\\" and i + 1 < n and raw[i + 1] in '"\\$`\n':
                    out.append(raw[i + 1] if raw[i + 1] != "\n" else "")
                    i += 2
                else:
                    out.append(raw[i])
                    i += 1
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _masked(text: str) -> str:
    """``text`` with the inside of every single-quoted string replaced by ``_``, one for one.

    Single-quoted text means nothing to the shell, but bashlex looks into it, and some of it
    (``'${'x``) sends bashlex into an endless loop; so does some text with ``${`` (fuzzing found no
    other trigger): ``${NAME}`` becomes ``$NAME__``, and text with another ``${`` is left to the
    tokenizer. Quoting contexts nest as the shell's do
    (``"$(echo '...')"`` has a single-quoted string inside); word positions stay the same, and
    words are read from the original text."""
    if "${" in text:
        text = _BRACED.sub(lambda m: "$" + m.group(1) + "_" * 2, text)
    if "'" not in text:
        return text
    out = list(text)
    stack = ["top"]  # top | dq (double quotes) | sub (inside $( ), counting parens) | bt (backticks)
    depth = [0]
    i, n = 0, len(text)
    while i < n:
        c, where = text[i], stack[-1]
        if c == "\\":
            i += 2
            continue
        if where != "dq" and c == "'":
            ansi = i > 0 and text[i - 1] == "$"
            end = i + 1
            while end < n and text[end] != "'":
                end += 2 if ansi and text[end] == "\\" else 1
            for k in range(i + 1, min(end, n)):
                if out[k] != "\n":
                    out[k] = "_"
            i = end + 1
            continue
        if c == '"':
            if where == "dq":
                stack.pop()
            else:
                stack.append("dq")
        elif text.startswith("$(", i):
            stack.append("sub")
            depth.append(0)
            i += 2
            continue
        elif c == "`":
            if where == "bt":
                stack.pop()
            else:
                stack.append("bt")
        elif where == "sub" and c == "(":
            depth[-1] += 1
        elif where == "sub" and c == ")":
            if depth[-1]:
                depth[-1] -= 1
            else:
                stack.pop()
                depth.pop()
        i += 1
    return "".join(out)


def _ansi_c(body: str) -> str:
    try:
        with warnings.catch_warnings():  # an unknown escape (\=) is kept as written, as bash does
            warnings.simplefilter("ignore", DeprecationWarning)
            return codecs.decode(body.encode("latin-1", "backslashreplace"), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return body


def _options_then(args: tuple[str, ...], with_value: frozenset[str]) -> tuple[str, ...]:
    """What follows a wrapper's options: ``-u root`` skips two words, ``--user=root`` one."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return args[i:]
        i += 2 if arg in with_value else 1
    return ()


def _nonoptions(args: tuple[str, ...]) -> list[str]:
    out, options = [], True
    for arg in args:
        if options and arg == "--":
            options = False
        elif not (options and arg.startswith("-") and arg != "-"):
            out.append(arg)
    return out


_SUDO_VALUES = frozenset({"-u", "-g", "-h", "-p", "-C", "-r", "-t", "-U", "-D", "-R", "-T", "--user", "--group",
                          "--host", "--prompt", "--close-from", "--role", "--type", "--other-user", "--chdir"})
_XARGS_VALUES = frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter", "--max-args",
                           "--max-procs", "--max-chars", "--max-lines", "--replace"})
_TIMEOUT_VALUES = frozenset({"-s", "-k", "--signal", "--kill-after"})
_NICE_VALUES = frozenset({"-n", "--adjustment"})
_IONICE_VALUES = frozenset({"-c", "-n", "--class", "--classdata"})
_STDBUF_VALUES = frozenset({"-i", "-o", "-e", "--input", "--output", "--error"})
_TIME_VALUES = frozenset({"-f", "-o", "--format", "--output"})
_EXEC_VALUES = frozenset({"-a"})
_ENV_VALUES = frozenset({"-u", "--unset", "-C", "--chdir"})
_WATCH_VALUES = frozenset({"-n", "--interval", "-d", "-q", "--equexit"})
_PLAIN_WRAPPERS = {"nohup": frozenset(), "setsid": frozenset(), "builtin": frozenset(), "busybox": frozenset(),
                   "sudo": _SUDO_VALUES, "doas": frozenset({"-u", "-C"}), "nice": _NICE_VALUES, "ionice": _IONICE_VALUES,
                   "stdbuf": _STDBUF_VALUES, "time": _TIME_VALUES, "exec": _EXEC_VALUES, "unbuffer": frozenset(),
                   "pkexec": frozenset({"--user"}), "chronic": frozenset(), "caffeinate": frozenset()}
_COPIERS = frozenset({"cp", "mv", "install", "ln", "rsync", "scp"})
_TOUCHERS = frozenset({"touch", "truncate", "mkdir", "rm", "rmdir", "unlink", "shred", "mknod", "mkfifo"})
_OWNERS = frozenset({"chmod", "chown", "chgrp"})


class _Reader:
    """Collects the facts of one command, through every nested command and shell string."""

    def __init__(self) -> None:
        self.commands: list[Simple] = []
        self.writes: list[str] = []
        self.lines: list[str] = []
        self.vars: dict[str, str] = {}
        self.parsed = True
        self.note = ""

    def read(self, text: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.parsed, self.note = False, f"shell strings nested deeper than {MAX_DEPTH} were not read"
            return
        if _SIMPLE.fullmatch(text):
            words = text.split()
            assigns = []
            while words and _ASSIGNMENT.match(words[0]):
                assigns.append(words.pop(0))
                self._assign(assigns[-1])
            self.lines.append(" ".join([*assigns, *self.simple(words, depth, [], [])]))
            return
        if _TOKENIZABLE.fullmatch(text) and "<<" not in text:
            _Tokens(self, text, depth).read()
            return
        masked = _masked(text)
        if len(text) > MAX_PARSE_CHARS:
            self.parsed, self.note = False, f"longer than {MAX_PARSE_CHARS} characters: read by the plain tokenizer"
        elif "${" in masked:
            self.parsed, self.note = False, "a ${...} expansion bashlex cannot be trusted with: read by the plain tokenizer"
        else:
            try:
                nodes = bashlex.parse(masked)
            except Exception as exc:  # bashlex raises ParsingError, NotImplementedError and worse on odd input
                self.parsed, self.note = False, f"bashlex could not parse it ({type(exc).__name__}: {str(exc)[:80]})"
            else:
                for node in nodes:
                    self.lines.append(self._node(node, text, depth))
                return
        _Tokens(self, text, depth).read()

    def _assign(self, word: str) -> None:
        name, _, value = word.partition("=")
        self.vars[name] = value

    # ------------------------------------------------------------------ bashlex nodes
    def _node(self, node: object, src: str, depth: int) -> str:
        kind = getattr(node, "kind", "")
        if kind == "command":
            return self._command(node, src, depth)
        if kind in ("list", "pipeline", "if", "for", "while", "until", "compound", "function"):
            parts = getattr(node, "list", None) if kind == "compound" else getattr(node, "parts", None)
            rendered = [self._node(part, src, depth) for part in parts or ()]
            rendered += [self._redirect(r, src, depth, [], [], [], []) for r in getattr(node, "redirects", None) or ()]
            if kind == "function":
                rendered = [r for r in rendered if r and r not in ("function", "(", ")")]
                return f"{rendered[0]}() " + " ".join(rendered[1:]) if rendered else ""
            return " ".join(r for r in rendered if r)
        if kind == "operator":
            return getattr(node, "op", "")
        if kind == "pipe":
            return getattr(node, "pipe", "|")
        if kind == "reservedword":
            return getattr(node, "word", "")
        if kind == "word":
            return self._word(node, src, depth, [])
        return ""

    def _word(self, node: object, src: str, depth: int, subs: list[str]) -> str:
        for part in getattr(node, "parts", None) or ():
            if getattr(part, "kind", "") in ("commandsubstitution", "processsubstitution"):
                line = self._node(part.command, src, depth + 1)  # type: ignore[attr-defined]
                self.lines.append(line)
                subs.append(line)
        start, end = node.pos  # type: ignore[attr-defined]
        return unquote(src[start:end])

    def _command(self, node: object, src: str, depth: int) -> str:
        words: list[str] = []
        assigns: list[str] = []
        reads: list[str] = []
        writes: list[str] = []
        feeds: list[str] = []
        subs: list[str] = []
        redirects = []
        for part in getattr(node, "parts", None) or ():
            kind = getattr(part, "kind", "")
            if kind == "word":
                words.append(self._word(part, src, depth, subs))
            elif kind == "assignment":
                assigns.append(self._word(part, src, depth, subs))
                self._assign(assigns[-1])
            elif kind == "redirect":
                redirects.append(self._redirect(part, src, depth, reads, writes, feeds, subs))
        return self._render(words, assigns, redirects, reads, writes, feeds, subs, depth)

    def _redirect(self, node: object, src: str, depth: int, reads: list[str], writes: list[str], feeds: list[str],
                  subs: list[str]) -> str:
        op = getattr(node, "type", "")
        target = getattr(node, "output", None)
        if op in ("<<", "<<-"):
            heredoc = getattr(node, "heredoc", None)
            if heredoc is not None:  # read from the original text: bashlex saw single quotes masked
                start, end = heredoc.pos
                feeds.append(src[start:end].rsplit("\n", 1)[0])
            return op
        if target is None or isinstance(target, int):
            return f"{op}{target if target is not None else ''}"
        word = self._word(target, src, depth, subs)
        if op in _REDIRECT_WRITES:
            writes.append(word)
        elif op == "<":
            reads.append(word)
        elif op == "<<<":
            feeds.append(word)
        return f"{op} {word}"

    def _render(self, words: list[str], assigns: list[str], redirects: list[str], reads: list[str], writes: list[str],
                feeds: list[str], subs: list[str], depth: int) -> str:
        """Record one simple command (bashlex's or the tokenizer's) and render its normal form."""
        if words and (var := _VARIABLE.fullmatch(words[0])) and var.group(1) in self.vars:
            words = self.vars[var.group(1)].split() + words[1:]
        self.writes.extend(writes)
        effective = self.simple(words, depth, reads, writes)
        program = effective[0] if effective else ""
        if program in INTERPRETERS:
            self.lines.extend(f"{line} | {program}" for line in subs)
        if program in SHELLS:
            for text in feeds:
                self.read(text, depth + 1)
        return " ".join([*assigns, *effective, *redirects])

    # ------------------------------------------------------------------ simple commands
    def simple(self, words: list[str], depth: int, reads: list[str], writes: list[str]) -> list[str]:
        """Record ``words`` and every command it wraps; return the innermost command's words."""
        current: tuple[str, ...] = tuple(words)
        while current:
            program = program_name(current[0])
            args = current[1:]
            self.commands.append(Simple(program=program, args=args, paths=(*_nonoptions(args), *reads, *writes)))
            self._writes_of(program, args)
            inner = self._unwrap(program, args, depth)
            if inner is None:
                return [program, *args]
            current = inner
        return []

    def _unwrap(self, program: str, args: tuple[str, ...], depth: int) -> tuple[str, ...] | None:
        """The command ``program`` runs with ``args``, when it is a wrapper; nested strings are read."""
        if program in _PLAIN_WRAPPERS:
            return _options_then(args, _PLAIN_WRAPPERS[program]) or None
        if program in SHELLS or program == "su":
            self._shell_string(program, args, depth)
            return None
        if program == "eval":
            self.read(" ".join(args), depth + 1)
            return None
        if program == "command":
            return None if any(a in ("-v", "-V") for a in args) else _options_then(args, frozenset()) or None
        if program == "env":
            return self._env(args, depth)
        if program == "timeout":
            rest = _options_then(args, _TIMEOUT_VALUES)
            return rest[1:] or None
        if program == "xargs":
            return _options_then(args, _XARGS_VALUES) or None
        if program == "watch":
            rest = _options_then(args, _WATCH_VALUES)
            if rest:
                self.read(" ".join(rest), depth + 1)
            return None
        if program == "find":
            self._find_exec(args, depth)
        return None

    def _shell_string(self, program: str, args: tuple[str, ...], depth: int) -> None:
        for i, arg in enumerate(args):
            if arg.startswith("--command="):
                self.read(arg.partition("=")[2], depth + 1)
                return
            if arg in ("-c", "--command") or (arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]):
                rest = _nonoptions(args[i + 1:]) if program != "su" else list(args[i + 1:i + 2])
                if rest:
                    self.read(rest[0], depth + 1)
                return

    def _env(self, args: tuple[str, ...], depth: int) -> tuple[str, ...] | None:
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-S", "--split-string") and i + 1 < len(args):
                self.read(" ".join(args[i + 1:]), depth + 1)
                return None
            if arg.startswith("-") and arg != "-":
                i += 2 if arg in _ENV_VALUES else 1
            elif _ASSIGNMENT.match(arg):
                self.lines.append(arg)
                self._assign(arg)
                i += 1
            else:
                return args[i:]
        return None

    def _find_exec(self, args: tuple[str, ...], depth: int) -> None:
        i = 0
        while i < len(args):
            if args[i] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = i + 1
                while end < len(args) and args[end] not in (";", "+"):
                    end += 1
                self.lines.append(" ".join(self.simple(list(args[i + 1:end]), depth, [], [])))
                i = end
            i += 1

    def _writes_of(self, program: str, args: tuple[str, ...]) -> None:
        """Files ``program`` writes, for the programs that say it in their arguments."""
        if program == "tee":
            self.writes.extend(_nonoptions(args))
        elif program in _COPIERS:
            for i, arg in enumerate(args):
                if arg in ("-t", "--target-directory") and i + 1 < len(args):
                    self.writes.append(args[i + 1])
                    return
                if arg.startswith("--target-directory="):
                    self.writes.append(arg.partition("=")[2])
                    return
            plain = _nonoptions(args)
            if len(plain) >= 2:
                self.writes.append(plain[-1])
        elif program == "dd":
            self.writes.extend(arg[3:] for arg in args if arg.startswith("of="))
        elif program in _TOUCHERS:
            self.writes.extend(_nonoptions(args))
        elif program in _OWNERS:
            self.writes.extend(_nonoptions(args)[1:])
        elif program == "sed" and any(a.startswith("-i") or a.startswith("--in-place") for a in args):
            self.writes.extend(_nonoptions(args)[1:])


class _Tokens:
    """The fallback: a tokenizer that knows quotes, operators, redirections and substitutions, and
    treats every segment between operators as a command (over-approximating, never failing)."""

    _OPS = ("&&", "||", ";;", "|&", ";", "&", "|", "\n", "(", ")")
    _REDIRS = ("&>>", ">>", "&>", ">|", ">&", "<<<", "<<-", "<<", "<>", ">", "<")

    def __init__(self, reader: _Reader, text: str, depth: int) -> None:
        self.reader, self.text, self.depth = reader, text, depth
        self.tokens: list[tuple[str, str]] = []  # (kind: word | op | redir, value)
        self.subs: list[str] = []

    def read(self) -> None:
        self._lex()
        segment: list[tuple[str, str]] = []
        rendered: list[str] = []
        for kind, value in [*self.tokens, ("op", ";")]:
            if kind == "op":
                rendered.append(self._segment(segment))
                rendered.append(value if value != "\n" else ";")
                segment = []
            else:
                segment.append((kind, value))
        self.reader.lines.append(" ".join(r for r in rendered[:-1] if r))

    def _segment(self, tokens: list[tuple[str, str]]) -> str:
        words: list[str] = []
        assigns: list[str] = []
        reads: list[str] = []
        writes: list[str] = []
        feeds: list[str] = []
        redirects: list[str] = []
        i = 0
        while i < len(tokens):
            kind, value = tokens[i]
            if kind == "redir":
                target = tokens[i + 1][1] if i + 1 < len(tokens) and tokens[i + 1][0] == "word" else ""
                (writes if value in _REDIRECT_WRITES else reads if value == "<" else feeds if value == "<<<" else []).append(target)
                redirects.append(f"{value} {target}".strip())
                i += 2
                continue
            if not words and (value in _RESERVED):
                i += 1
                continue
            if not words and _ASSIGNMENT.match(value):
                assigns.append(value)
                self.reader._assign(value)
            else:
                words.append(value)
            i += 1
        return self.reader._render(words, assigns, redirects, reads, writes, feeds, self.subs, self.depth)

    def _lex(self) -> None:
        text, n, i = self.text, len(self.text), 0
        word: list[str] = []
        started = False

        def flush() -> None:
            nonlocal started
            if started:
                self.tokens.append(("word", "".join(word)))
            word.clear()
            started = False

        while i < n:
            c = text[i]
            if c in " \t":
                flush()
                i += 1
            elif c == "#" and not started:
                end = text.find("\n", i)
                i = n if end < 0 else end
            elif c == "\\":
                if i + 1 < n and text[i + 1] != "\n":
                    word.append(text[i + 1])
                    started = True
                i += 2
            elif c == "'":
                end = text.find("'", i + 1)
                end = n if end < 0 else end
                word.append(text[i + 1:end])
                started = True
                i = end + 1
            elif c == '"':
                i = self._double_quoted(i + 1, word)
                started = True
            elif c == "`" or text.startswith(("$(", "<(", ">("), i):
                i = self._substitution(i)
                started = True
            elif c in "<>" or (c == "&" and text.startswith("&>", i)):
                if started and "".join(word).isdigit():
                    word.clear()
                    started = False
                flush()
                op = next(r for r in self._REDIRS if text.startswith(r, i))
                self.tokens.append(("redir", op))
                i += len(op)
            elif c in ";&|()\n":
                flush()
                op = next(o for o in self._OPS if text.startswith(o, i))
                self.tokens.append(("op", op))
                i += len(op)
            else:
                word.append(c)
                started = True
                i += 1
        flush()

    def _double_quoted(self, i: int, word: list[str]) -> int:
        text, n = self.text, len(self.text)
        while i < n and text[i] != '"':
            if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                word.append(text[i + 1])
                i += 2
            elif text[i] == "`" or text.startswith("$(", i):
                i = self._substitution(i)
            else:
                word.append(text[i])
                i += 1
        return i + 1

    def _substitution(self, i: int) -> int:
        """Read the command inside ``$(...)``, ``<(...)``, ``>(...)`` or backticks as a command of its own."""
        text, n = self.text, len(self.text)
        if text[i] == "`":
            end = text.find("`", i + 1)
            end = n if end < 0 else end
            inner, after = text[i + 1:end], end + 1
        else:
            level, end = 1, i + 2
            while end < n and level:
                level += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            inner, after = text[i + 2:end - 1 if level == 0 else end], end
        before = len(self.reader.lines)
        self.reader.read(inner, self.depth + 1)
        self.subs.extend(self.reader.lines[before:])
        return after
