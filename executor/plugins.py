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


class SandboxPlugin(abc.ABC):
    kinds: ClassVar[frozenset[str]] = frozenset()

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
        self._editor = Editor(session_id=self.ctx.session_id, max_bytes=self.ctx.max_read_bytes)

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        assert isinstance(action, FileEdit)
        return await self._editor.edit(action)


PLUGINS.register("shell", ShellPlugin)
PLUGINS.register("files", FilesPlugin)
PLUGINS.register("editor", EditorPlugin)


class PluginSet:
    """One session's plugins: which serves each kind, each started on its first action."""

    def __init__(self, ctx: SandboxContext, names: list[str]) -> None:
        self._ctx = ctx
        self._classes: dict[str, type[SandboxPlugin]] = {}
        for name in dict.fromkeys([*CORE, *names]):
            cls = PLUGINS.get(name)  # UnknownName for a plugin this sandbox does not have
            for kind in cls.kinds:
                self._classes.setdefault(kind, cls)
        self._started: dict[type[SandboxPlugin], SandboxPlugin] = {}
        self._starting = asyncio.Lock()

    def serves(self, kind: str) -> bool:
        return kind in self._classes

    async def plugin_for(self, kind: str) -> SandboxPlugin | None:
        cls = self._classes.get(kind)
        if cls is None:
            return None
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
