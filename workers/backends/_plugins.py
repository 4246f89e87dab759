"""What a session's plugins ask of a backend: image variants (docker), importable modules (local, bubblewrap).

Unknown plugin names are the session's mistake (``invalid_spec``); a plugin this backend's
sandboxes cannot serve is ``plugin_unavailable``, with the command that fixes it.
"""

from __future__ import annotations

from typing import Callable, Iterable

from executor.code_server import IMAGE_ROOT as CODE_SERVER_IMAGE_ROOT, ROOT_ENV as CODE_SERVER_ENV
from executor.plugins import PLUGINS, PluginUnavailable, check_available, resolve, variants_for
from protocol import Mount, SessionSpec, UnknownName, codes

from ._base import BackendError


def plugin_variants(plugins: Iterable[str]) -> tuple[str, ...]:
    """The image variants a session's plugins need, sorted; BackendError ``invalid_spec`` for an unknown name."""
    try:
        return variants_for(tuple(plugins))
    except UnknownName as exc:
        raise BackendError(f"unknown plugin {exc.name!r} (known: {', '.join(exc.known) or 'none'})",
                           codes.INVALID_SPEC) from None
    except ValueError as exc:  # plugins that require each other in a circle
        raise BackendError(str(exc), codes.INVALID_SPEC) from None


def check_plugins_here(plugins: Iterable[str]) -> None:
    """For sandboxes that run this interpreter's modules: every plugin's modules must import."""
    names = tuple(plugins)
    plugin_variants(names)  # unknown names first
    try:
        check_available(names)
    except PluginUnavailable as exc:
        raise BackendError(str(exc), codes.PLUGIN_UNAVAILABLE) from None


def require_variants(image: str, has: frozenset[str], needed: Iterable[str]) -> None:
    """BackendError ``plugin_unavailable`` naming the first variant ``image`` lacks and the build command."""
    missing = [v for v in needed if v not in has]
    if missing:
        command = "corral image build " + " ".join(f"--with {v}" for v in missing)
        raise BackendError(f"image {image!r} lacks the image variant {missing[0]!r} the session's plugins need "
                           f"(it has: {', '.join(sorted(has)) or 'none'}); build one with: {command}  "
                           "(and configure the tag it prints, or leave the image unset to get it built)",
                           codes.PLUGIN_UNAVAILABLE)


def plugin_modules(plugins: Iterable[str]) -> tuple[str, ...]:
    """The Python modules the resolved plugins need in the sandbox (empty for the core's and
    pure-action plugins); unknown names need nothing here (``plugin_variants`` reports them)."""
    try:
        names = resolve(tuple(plugins))
    except (UnknownName, ValueError):
        return ()
    return tuple(dict.fromkeys(m for name in names for m in PLUGINS.get(name).modules))


def servable_modules() -> tuple[str, ...]:
    """The modules of every registered plugin this interpreter can serve (with what it requires),
    for sandboxes that carry a copy of them."""
    modules: dict[str, None] = {}
    for name in PLUGINS.names():
        try:
            check_available((name,))
        except (PluginUnavailable, UnknownName, ValueError):
            continue
        modules.update(dict.fromkeys(plugin_modules((name,))))
    return tuple(modules)


MCP_SCRIPT_PREFIXES = ("mcp-server-", "mcp_server_")


def mcp_server_modules() -> tuple[str, ...]:
    """The top-level modules of the installed stdio MCP servers (distributions with a console
    script named ``mcp-server-*``, as the PyPI reference servers have), for sandboxes that carry a
    copy of them: there the executor runs such a server by its entry point."""
    import importlib.metadata

    return tuple(sorted({ep.module.split(".")[0] for ep in importlib.metadata.entry_points(group="console_scripts")
                         if ep.name.startswith(MCP_SCRIPT_PREFIXES)}))


def needs_plugin_runtime(spec: SessionSpec) -> bool:
    """Does the session need a sandbox that carries Python packages beyond the executor's own:
    its plugins' modules, or the stdio MCP servers its spec names?"""
    return bool(plugin_modules(spec.plugins)) or bool(spec.mcp.get("stdio_servers"))


def code_server_env() -> dict[str, str]:
    """``CORRAL_CODE_SERVER`` for a local sandbox's executor: the host's code-server install (the
    vscode plugin), in the worker's cache (a local executor's environment lacks CORRAL_*)."""
    from images import code_server_root

    root = code_server_root()
    return {CODE_SERVER_ENV: str(root)} if root is not None else {}


def code_server_mounts(plugins: Iterable[str], can_read: Callable[[str], bool]) -> list[Mount]:
    """The host's code-server install, read-only at the image's path, for a session with the vscode
    plugin (none for others); ``plugin_unavailable`` when it is missing or the sandbox user cannot
    read it (``can_read``)."""
    try:
        if "vscode" not in resolve(tuple(plugins)):
            return []
    except (UnknownName, ValueError):
        return []  # plugin_variants reports them
    from images import CODE_SERVER_VERSION, code_server_root

    root = code_server_root()
    if root is None:
        raise BackendError(f"the vscode plugin needs code-server {CODE_SERVER_VERSION} on the worker's host: "
                           "install it with `corral vscode install` (./dev setup does)", codes.PLUGIN_UNAVAILABLE)
    if not can_read(str(root)):
        raise BackendError(f"the sandbox user cannot read the code-server install at {root}: make it and its "
                           "parents o+rx", codes.PLUGIN_UNAVAILABLE)
    return [Mount(source=str(root), target=CODE_SERVER_IMAGE_ROOT, read_only=True)]
