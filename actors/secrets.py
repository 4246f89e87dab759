"""Secrets: a session's env values that must never leave the worker in the clear.

A session's spec may mark env values secret (``SessionSpec.secrets``). They reach the sandbox's
environment, and everything corral publishes or logs about the session has each value replaced by
``[secret:NAME]``: a ``Masker`` does that to strings and to the string fields of msgspec structs
(observations, session infos), a ``StreamMasker`` to a command's output as it streams (a value
split across two chunks is still masked), and ``mask_log_secrets``, a structlog processor, to every
log line of a process while the sessions whose secrets it holds are live (``live_secrets``).

What is matched is the value as written (and, for a value with newlines, as a terminal writes it,
with ``\\r\\n``); an encoding of it (base64, hex, a URL-quoted form, ...) is not. Where values
overlap, the longest is replaced first.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Any, Iterable, Iterator, Mapping, TypeVar

import msgspec

T = TypeVar("T")

IDENTITY_FIELDS = frozenset({"id", "cause", "session_id", "kind"})
"""Fields that identify events rather than say something: never rewritten (they are ids)."""

_SIMPLE = (int, float, bool, type(None), bytes)


def placeholder(name: str) -> str:
    return f"[secret:{name}]"


class Masker:
    """Replaces the values of a set of secrets; build one with ``Masker.of`` (None for no secrets)."""

    __slots__ = ("_values", "_replacement", "_pattern", "longest")

    def __init__(self, secrets: Iterable[tuple[str, str]]) -> None:
        replacement: dict[str, str] = {}
        for name, value in sorted(secrets):
            for variant in (value, value.replace("\r\n", "\n").replace("\n", "\r\n")):
                replacement.setdefault(variant, placeholder(name))
        self._values = sorted(replacement, key=len, reverse=True)
        """Longest first: the alternation below then prefers the longer of two values that overlap."""
        self._replacement = replacement
        self._pattern = re.compile("|".join(re.escape(v) for v in self._values))
        self.longest = len(self._values[0])

    @classmethod
    def of(cls, secrets: Mapping[str, str] | Iterable[tuple[str, str]]) -> Masker | None:
        """A masker for ``secrets`` (name -> value, or pairs: two values may share a name); None
        when there are none (callers then skip masking altogether)."""
        pairs = [(name, value) for name, value in (secrets.items() if isinstance(secrets, Mapping) else secrets) if value]
        return cls(pairs) if pairs else None

    def hit(self, text: str) -> bool:
        """Does ``text`` hold any of the values? (A substring scan per value, no regex.)"""
        return any(value in text for value in self._values)

    def mask_str(self, text: str) -> str:
        """``text`` with every value replaced; the very same object when it holds none."""
        if not self.hit(text):
            return text
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        return self._replacement[match.group()]

    def mask(self, obj: T) -> T:
        """``obj`` (a struct, list, dict or str) with every value replaced in every string it holds,
        except ids (``IDENTITY_FIELDS``) and literal-typed fields; the same object when nothing changed."""
        return self._value(obj)  # type: ignore[no-any-return]

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_str(value)
        if isinstance(value, msgspec.Struct):
            return self._struct(value)
        if isinstance(value, list):
            items = [self._value(v) for v in value]
            return items if any(a is not b for a, b in zip(items, value)) else value
        if isinstance(value, dict):
            pairs = [(self._value(k), self._value(v)) for k, v in value.items()]
            changed = any(k is not k0 or v is not v0 for (k, v), (k0, v0) in zip(pairs, value.items()))
            return dict(pairs) if changed else value
        if isinstance(value, tuple):
            items = tuple(self._value(v) for v in value)
            return items if any(a is not b for a, b in zip(items, value)) else value
        return value

    def _struct(self, obj: msgspec.Struct) -> msgspec.Struct:
        changes = {}
        for name in _text_fields(type(obj)):
            value = getattr(obj, name)
            masked = self._value(value)
            if masked is not value:
                changes[name] = masked
        return msgspec.structs.replace(obj, **changes) if changes else obj

    def mask_log_value(self, value: Any) -> Any:
        """A log event's value: strings and containers as ``mask``; any other object by its text,
        which replaces it only when it shows a value (a renderer would print that text)."""
        if isinstance(value, _SIMPLE):
            return value
        if isinstance(value, (str, msgspec.Struct, list, dict, tuple)):
            return self._value(value)
        text = repr(value)
        return self.mask_str(text) if self.hit(text) else value

    # ------------------------------------------------------------------ streams
    def partial_from(self, text: str, start: int) -> int:
        """The first index ``i >= start`` where ``text[i:]`` is a proper prefix of a value (the
        value may go on in the next chunk); ``len(text)`` when there is none."""
        n = len(text)
        best = n
        for value in self._values:
            i = text.find(value[0], max(start, n - len(value) + 1), best)
            while i != -1:
                if value.startswith(text[i:]):
                    best = i
                    break
                i = text.find(value[0], i + 1, best)
        return best

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks one command's output chunk by chunk: a tail that may be the start of a value is held
    back until the next chunk (or ``flush`` at the end), so a value split across chunks is masked
    too. Output that cannot start a value is never held."""

    __slots__ = ("_masker", "_held", "seq")

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = ""
        self.seq = 0
        """The ``seq`` of the next chunk published (held chunks are not published, so numbering is ours)."""

    @property
    def held(self) -> str:
        return self._held

    def feed(self, data: str) -> str:
        """What of ``data`` (after what was held) can be published now, masked."""
        m = self._masker
        text = self._held + data
        n = len(text)
        cut = m.partial_from(text, max(n - m.longest + 1, 0))
        if cut == n:
            self._held = ""
            return m.mask_str(text)
        # A full match running into the tail that may go on (a shorter value that is also the start
        # of a longer one, a value that ends with its own beginning) is held back with it, whole.
        pieces, done = [], 0
        for match in m._pattern.finditer(text):
            if match.end() > cut:
                cut = min(cut, match.start())
                break
            pieces += [text[done:match.start()], m._replacement[match.group()]]
            done = match.end()
        pieces.append(text[done:cut])
        self._held = text[cut:]
        return "".join(pieces)

    def flush(self) -> str:
        """The held tail, masked (the command's output ended)."""
        text, self._held = self._held, ""
        return self._masker.mask_str(text) if text else ""


_fields_cache: dict[type, tuple[str, ...]] = {}


def _text_fields(cls: type) -> tuple[str, ...]:
    """The fields of a struct type that may hold free text: strings, containers, nested structs, Any."""
    found = _fields_cache.get(cls)
    if found is None:
        try:
            fields = getattr(msgspec.inspect.type_info(cls), "fields", ())
            found = tuple(f.name for f in fields if f.name not in IDENTITY_FIELDS and _may_hold_text(f.type))
        except (TypeError, ValueError):  # an annotation msgspec cannot describe: look at every field
            found = tuple(name for name in cls.__struct_fields__ if name not in IDENTITY_FIELDS)  # type: ignore[attr-defined]
        _fields_cache[cls] = found
    return found


def _may_hold_text(t: msgspec.inspect.Type) -> bool:
    inspect = msgspec.inspect
    if isinstance(t, (inspect.StrType, inspect.AnyType, inspect.DictType, inspect.StructType, inspect.CustomType)):
        return True
    if isinstance(t, inspect.UnionType):
        return any(_may_hold_text(member) for member in t.types)
    if isinstance(t, (inspect.ListType, inspect.SetType, inspect.FrozenSetType, inspect.VarTupleType)):
        return _may_hold_text(t.item_type)
    if isinstance(t, inspect.TupleType):
        return any(_may_hold_text(item) for item in t.item_types)
    return False  # literals (statuses, codes), numbers, booleans, bytes


class LiveSecrets:
    """The secrets of the sessions this process holds now, by owner (a session id): what the log
    processor masks. One per process (``live_secrets``); empty, the processor costs one attribute read."""

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[str, str]] = {}
        self._holds = itertools.count()
        self.masker: Masker | None = None

    def add(self, owner: str, secrets: Mapping[str, str]) -> None:
        if not secrets or self._by_owner.get(owner) == dict(secrets):
            return
        self._by_owner[owner] = dict(secrets)
        self._rebuild()

    def discard(self, owner: str) -> None:
        if self._by_owner.pop(owner, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        self.masker = Masker.of([pair for secrets in self._by_owner.values() for pair in secrets.items()])

    @contextlib.contextmanager
    def holding(self, secrets: Mapping[str, str]) -> Iterator[None]:
        """Mask ``secrets`` in this process's logs while the block runs (e.g. a create request)."""
        owner = f"hold:{next(self._holds)}"
        self.add(owner, secrets)
        try:
            yield
        finally:
            self.discard(owner)

    def __len__(self) -> int:
        return len(self._by_owner)


live_secrets = LiveSecrets()


def without_secrets(spec: T) -> T:
    """A ``SessionSpec`` as the registry keeps it: the secrets' names and values left out."""
    secrets = getattr(spec, "secrets", None)
    return msgspec.structs.replace(spec, secrets={}) if secrets else spec  # type: ignore[type-var]


def mask_log_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every value of the live sessions' secrets in a log event becomes
    ``[secret:NAME]``. Place it after ``format_exc_info`` (so tracebacks are text) and before the renderer."""
    masker = live_secrets.masker
    if masker is None:
        return event_dict
    return {key: masker.mask_log_value(value) for key, value in event_dict.items()}
