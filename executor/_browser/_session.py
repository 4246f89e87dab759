"""One session's Chromium: Playwright's driver, the browser, its one context, its tabs and downloads.

Chromium is started by the executor, so it runs as the sandbox's user, under its limits, and
reaches what the sandbox reaches (with ``network: none``, only servers inside the sandbox). It gets
a private home under the sandbox's /tmp (its NSS database and caches stay out of the workspace);
downloads are saved into the session's output directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import tempfile
from typing import Any

from ..plugins import PluginUnavailable, SandboxContext
from ._dom import frame_prefix

CHROMIUM_ENV = "CORRAL_CHROMIUM"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
"""Debian's real binary first: /usr/bin/chromium is a shell wrapper that reads /etc/chromium.d."""
VIEWPORT = {"width": 1280, "height": 720}
CLOSE_TIMEOUT_S = 10.0
CHROMIUM_ARGS = (
    # Chromium's own sandbox needs user namespaces or a setuid helper, which our sandboxes rightly
    # deny (no capabilities, no_new_privs, nested user namespaces off). The outer sandbox is the
    # boundary that holds: Chromium runs as the sandbox's user, under its limits, seeing only what
    # the sandbox sees; a page that escaped the renderer gains nothing the agent's shell lacks.
    "--no-sandbox",
    "--disable-dev-shm-usage",  # a container's /dev/shm is 64 MB: shared memory goes to /tmp
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--password-store=basic",
    "--disable-background-networking",  # no updates, safe-browsing lists or metrics: only the pages asked for
    "--disable-component-update",
)


def chromium_path() -> str:
    """The Chromium to start: $CORRAL_CHROMIUM, else Debian's; PluginUnavailable when none is installed."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise PluginUnavailable("browser", "Chromium (apt-get install chromium, or set CORRAL_CHROMIUM)", "browser")


def _api() -> Any:
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError as exc:
        raise PluginUnavailable("browser", "the Python module 'playwright'", "browser") from exc


class BrowserSession:
    """Playwright + Chromium + one context; ``active`` is the tab actions go to."""

    def __init__(self, ctx: SandboxContext) -> None:
        self._ctx = ctx
        self.api: Any = None
        self._pw: Any = None
        self.browser: Any = None
        self.context: Any = None
        self.active: Any = None
        self._home = ""
        self._cdp: dict[Any, Any] = {}
        self.prefixes: dict[Any, dict[Any, str]] = {}
        """Per page, per child frame: its bid prefix (assigned in order of first sight)."""
        self._children: dict[Any, int] = {}
        """Per page: how many child frames got a prefix (a prefix is never reused on a page)."""
        self._downloads: list[asyncio.Task[str]] = []
        self._targets: Any = None
        """A browser-level CDP session: how many tabs Chromium has (``adopt_new_tabs``)."""
        self._tab_seen = asyncio.Event()

    async def start(self) -> None:
        self.api = await asyncio.to_thread(_api)  # importing Playwright takes a moment: off the loop
        executable = chromium_path()
        self._home = tempfile.mkdtemp(prefix="corral-browser-")
        try:
            self._pw = await self.api.async_playwright().start()
            self.browser = await self._pw.chromium.launch(
                executable_path=executable, headless=True, env=self._env(), timeout=60_000,
                args=[*CHROMIUM_ARGS, f"--corral-session={self._ctx.session_id}"])
            self.context = await self.browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            self.context.on("page", self._adopt)
            self.active = await self.context.new_page()
        except BaseException:
            await self.aclose()
            raise

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self._ctx.shells.env}
        env.update(HOME=self._home, XDG_CONFIG_HOME=f"{self._home}/.config", XDG_CACHE_HOME=f"{self._home}/.cache",
                   TMPDIR=env.get("TMPDIR", "/tmp"))
        return env

    def alive(self) -> bool:
        return self.browser is not None and self.browser.is_connected()

    async def aclose(self) -> None:
        """Close the browser and Playwright's driver (idempotent; a dead browser closes quietly)."""
        pw, browser, self._pw, self.browser, self.context, self.active = self._pw, self.browser, None, None, None, None
        for task in self._downloads:
            task.cancel()
        self._downloads.clear()
        self._cdp.clear()
        self._targets = None
        self.prefixes.clear()
        self._children.clear()
        if browser is not None:
            with contextlib.suppress(Exception):  # already dead, or the driver with it: nothing to close
                await asyncio.wait_for(browser.close(), CLOSE_TIMEOUT_S)
        if pw is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pw.stop(), CLOSE_TIMEOUT_S)
        if self._home:
            await asyncio.to_thread(shutil.rmtree, self._home, True)
            self._home = ""

    # ------------------------------------------------------------------ tabs
    def _adopt(self, page: Any) -> None:
        """A new tab (ours, a popup, a target=_blank link) becomes the active one."""
        page.on("download", self._download)
        page.on("close", self._closed)
        self.active = page
        self._tab_seen.set()

    async def adopt_new_tabs(self, timeout_s: float) -> None:
        """Return once every tab Chromium has opened (a popup, a target=_blank link a click just
        followed: Chromium makes its target before the click's input event is acknowledged) is one
        of our pages, or after ``timeout_s``."""
        if self._targets is None:
            self._targets = await self.browser.new_browser_cdp_session()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            self._tab_seen.clear()
            infos = (await self._targets.send("Target.getTargets"))["targetInfos"]
            if sum(1 for t in infos if t.get("type") == "page") <= len(self.context.pages):
                return
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tab_seen.wait(), left)

    def _closed(self, page: Any) -> None:
        self._cdp.pop(page, None)
        self.prefixes.pop(page, None)
        self._children.pop(page, None)
        if page is self.active and self.context is not None:
            pages = [p for p in self.context.pages if p is not page and not p.is_closed()]
            self.active = pages[-1] if pages else None

    def pages(self) -> list[Any]:
        return [p for p in self.context.pages if not p.is_closed()] if self.context is not None else []

    async def page(self) -> Any:
        """The active tab; a new blank one when every tab was closed."""
        if self.active is None or self.active.is_closed():
            pages = self.pages()
            self.active = pages[-1] if pages else await self.context.new_page()
        return self.active

    async def cdp(self, page: Any) -> Any:
        session = self._cdp.get(page)
        if session is None:
            session = self._cdp[page] = await self.context.new_cdp_session(page)
        return session

    def frame_prefixes(self, page: Any) -> dict[Any, str]:
        """Every live frame of ``page`` with its bid prefix ('' for the main frame)."""
        known = self.prefixes.setdefault(page, {page.main_frame: ""})
        for frame in page.frames:
            if frame not in known:
                known[frame] = frame_prefix(self._children.get(page, 0))
                self._children[page] = self._children.get(page, 0) + 1
        for frame in [f for f in known if f.is_detached()]:
            del known[frame]
        return known

    # ------------------------------------------------------------- downloads
    def _download(self, download: Any) -> None:
        self._downloads.append(asyncio.ensure_future(self._save(download)))

    async def _save(self, download: Any) -> str:
        directory = os.path.join(self._ctx.output_dir, "downloads")
        path = await asyncio.to_thread(_free_path, directory, download.suggested_filename)
        await download.save_as(path)
        return path

    async def take_downloads(self, timeout_s: float) -> tuple[list[str], str]:
        """The files downloaded since the last call (waiting for those still arriving), and an
        error for those that failed or did not finish in time."""
        tasks, self._downloads = self._downloads, []
        if not tasks:
            return [], ""
        done, pending = await asyncio.wait(tasks, timeout=max(0.1, timeout_s))
        for task in pending:
            task.cancel()
        paths = [t.result() for t in done if not t.cancelled() and t.exception() is None]
        failed = [str(t.exception()).splitlines()[0] for t in done if not t.cancelled() and t.exception()]
        error = "; ".join([*(f"download failed: {f}" for f in failed),
                           *([f"{len(pending)} download(s) did not finish in time"] if pending else [])])
        return paths, error


def _free_path(directory: str, suggested: str) -> str:
    """``directory/suggested`` (made safe), or ``name (n).ext`` when that exists already."""
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(suggested.replace("\\", "/")).lstrip(".") or "download"
    stem, ext = os.path.splitext(name)
    candidate, n = os.path.join(directory, name), 1
    while os.path.exists(candidate):
        candidate, n = os.path.join(directory, f"{stem} ({n}){ext}"), n + 1
    return candidate
