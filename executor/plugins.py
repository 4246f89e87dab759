"""In-sandbox plugins: the parts of the executor that answer actions, by kind.

The shell, the file operations and the editor are plugins like any other; a session may ask for
more (``Claim.plugins``: e.g. a kernel, a browser). A plugin is started on first use, so an idle
sandbox that declared plugins costs what one that did not costs, and heavy dependencies are
imported in ``start``, never at registry time. A third party adds one by entry point
(group ``corral.plugins``) or in code::

    class Echo(SandboxPlugin):
        kinds = frozenset({"echo"})

        async def handle(self, action, emit):
            return ...

    PLUGINS.register("echo", Echo)
"""

from __future__ import annotations

import abc
import asyncio
from typing import Callable, ClassVar

import msgspec

from protocol import AnyAction, AnyObservation, CmdChunk, CmdRun, FileEdit, FileRead, FileWrite, Registry

from ._editor import Editor
from ._files import file_read, file_write
from ._shell import ShellManager

Emit = Callable[[CmdChunk], None]


class SandboxContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a plugin may use of its sandbox: the session, its directories, its shells."""

    session_id: str
    workdir: str
    output_dir: str
    max_read_bytes: int
    shells: ShellManager
    plugins: tuple[str, ...] = ()
    """Every plugin the session asked for (after ``requires``), so one may serve another (the
    kernel imports the agent skills when the session has them)."""
    editor_history_dir: str = ""
    """Where the editor keeps its undo history, shared by every process of the sandbox that edits
    (a ``file_edit`` action and the skills' ``file_editor`` in a kernel see one history)."""


class SandboxPlugin(abc.ABC):
    kinds: ClassVar[frozenset[str]] = frozenset()
    """The action kinds it answers (none for a plugin that only adds to another, e.g. skills)."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Plugins it needs; asking for it asks for them."""
    variant: ClassVar[str | None] = None
    """The runtime image variant a Docker sandbox needs for it (``corral image build --with V``)."""
    modules: ClassVar[tuple[str, ...]] = ()
    """Python modules the executor's interpreter must be able to import to serve it."""
    lane: ClassVar[str | None] = None
    """The worker lane its actions run in (None: the core's lanes); a plugin's own lane means a
    long action of it blocks no shell, and no shell blocks it."""

    @classmethod
    def lane_for(cls, action: AnyAction) -> str | None:
        """The lane of one action (e.g. one per kernel name); ``lane`` by default."""
        return cls.lane

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        """Called once, before the plugin's first action (import heavy things here)."""

    @abc.abstractmethod
    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        """The action's final observation; chunks go through ``emit``."""

    async def aclose(self) -> None:
        """Called once when the executor stops (only if started)."""


PLUGINS: Registry[type[SandboxPlugin]] = Registry("corral.plugins")
CORE = ("shell", "files", "editor")
"""Every session has these; ``Claim.plugins`` adds others."""


class ShellPlugin(SandboxPlugin):
    """``cmd_run``: the session's named shells (started by the executor at claim: warm pools prestart them)."""

    kinds = frozenset({"cmd_run"})

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        assert isinstance(action, CmdRun)
        return await self.ctx.shells.run(action, emit)



class FilesPlugin(SandboxPlugin):
    """``file_read`` and ``file_write``, relative paths from the main shell's working directory."""

    kinds = frozenset({"file_read", "file_write"})

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        cwd, sid = self.ctx.shells.cwd(), self.ctx.session_id
        if isinstance(action, FileRead):
            return await file_read(action, cwd=cwd, session_id=sid, max_bytes=self.ctx.max_read_bytes)
        assert isinstance(action, FileWrite)
        return await file_write(action, cwd=cwd, session_id=sid)


class EditorPlugin(SandboxPlugin):
    """``file_edit``: view, create, str_replace, insert, undo_edit."""

    kinds = frozenset({"file_edit"})

    async def start(self) -> None:
        self._editor = Editor(session_id=self.ctx.session_id, max_bytes=self.ctx.max_read_bytes,
                              history_dir=self.ctx.editor_history_dir or None)

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        assert isinstance(action, FileEdit)
        return await self._editor.edit(action)


PLUGINS.register("shell", ShellPlugin)
PLUGINS.register("files", FilesPlugin)
PLUGINS.register("editor", EditorPlugin)


class PluginUnavailable(Exception):
    """A plugin this environment cannot serve; ``variant`` is the image variant that can."""

    def __init__(self, name: str, missing: str, variant: str | None, *, fix: str = "") -> None:
        fix = fix or (f"build an image with it: corral image build --with {variant}" if variant else "install it")
        super().__init__(f"plugin {name!r} needs {missing}, which this sandbox does not have; {fix}")
        self.name, self.missing, self.variant = name, missing, variant


def resolve(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The plugins a session gets for ``names`` (beyond the core): each after what it requires,
    in order, once. Raises ``UnknownName`` for a name nobody registered."""
    out: dict[str, None] = {}

    def add(name: str, seen: tuple[str, ...]) -> None:
        if name in out or name in CORE:
            return
        if name in seen:
            raise ValueError(f"plugins require each other in a circle: {' -> '.join((*seen, name))}")
        for needed in PLUGINS.get(name).requires:
            add(needed, (*seen, name))
        out[name] = None

    for name in names:
        add(name, ())
    return tuple(out)


def variants_for(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The image variants the resolved plugins need, sorted (the label of an image that has them)."""
    return tuple(sorted({v for n in resolve(names) if (v := PLUGINS.get(n).variant)}))


def check_available(names: list[str] | tuple[str, ...]) -> None:
    """Raise ``PluginUnavailable`` for the first resolved plugin whose modules this interpreter
    cannot import (what a local or bubblewrap sandbox runs is checked this way)."""
    import importlib.util

    for name in resolve(names):
        cls = PLUGINS.get(name)
        for module in cls.modules:
            if importlib.util.find_spec(module) is None:
                raise PluginUnavailable(name, f"the Python module {module!r}", cls.variant)


def plugin_for_kind(kind: str) -> str | None:
    """The registered plugin (not of the core) that serves ``kind``, to tell a session how to get it."""
    for name in PLUGINS.names():
        if name not in CORE and kind in PLUGINS.get(name).kinds:
            return name
    return None


class PluginSet:
    """One session's plugins: which serves each kind, each started on its first action."""

    def __init__(self, ctx: SandboxContext, names: list[str]) -> None:
        self._ctx = ctx
        self._classes: dict[str, type[SandboxPlugin]] = {}
        self._names = (*CORE, *resolve(names))
        for name in self._names:
            cls = PLUGINS.get(name)  # UnknownName for a plugin this sandbox does not have
            for kind in cls.kinds:
                self._classes.setdefault(kind, cls)
        self._started: dict[type[SandboxPlugin], SandboxPlugin] = {}
        self._starting = asyncio.Lock()

    def serves(self, kind: str) -> bool:
        return kind in self._classes

    async def plugin_for(self, kind: str) -> SandboxPlugin | None:
        cls = self._classes.get(kind)
        return None if cls is None else await self._start(cls)

    async def named(self, name: str) -> SandboxPlugin | None:
        """The session's plugin ``name``, started on first use (None: the session did not ask for it);
        for plugins started by a route of their own rather than by actions (``vscode``)."""
        return await self._start(PLUGINS.get(name)) if name in self._names else None

    async def _start(self, cls: type[SandboxPlugin]) -> SandboxPlugin:
        plugin = self._started.get(cls)
        if plugin is not None:
            return plugin
        async with self._starting:  # two first actions at once start it once
            if cls not in self._started:
                plugin = cls(self._ctx)
                await plugin.start()
                self._started[cls] = plugin
        return self._started[cls]

    def started(self) -> list[str]:
        return sorted(type(p).__name__ for p in self._started.values())

    async def aclose(self) -> None:
        for plugin in self._started.values():
            await plugin.aclose()
        self._started.clear()


from ._jupyter import KERNEL_OPTIONS, AgentSkillsPlugin, JupyterPlugin  # noqa: E402,F401  (they subclass SandboxPlugin)

PLUGINS.register("jupyter", JupyterPlugin)
PLUGINS.register("agent_skills", AgentSkillsPlugin)

from ._vscode import VscodePlugin  # noqa: E402

PLUGINS.register("vscode", VscodePlugin)

from ._browser import BrowserPlugin  # noqa: E402  (it subclasses SandboxPlugin)

PLUGINS.register("browser", BrowserPlugin)
