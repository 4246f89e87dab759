"""The ``browser`` plugin: Playwright driving Chromium inside the sandbox, for ``browse_url`` and
``browse_interactive``.

One browser per session, started on the first action (nothing is imported before), kept across
actions (cookies, tabs, history), in a lane of its own. A browser that died (killed, crashed) is
started afresh on the next action, whose answer says ``browser_restarted``. What the agent asked
that could not be done (an unknown bid, a bad script, a refused connection, a page that did not
load within ``timeout_s``) is reported in the answer's ``last_browser_action_error``, with the
browser where it is; the browser lives on.

``browse_url``'s ``content`` is the page as Markdown; ``browse_interactive``'s is the
accessibility tree with ``[bid]`` markers (see ``_axtree``), the ids its steps name elements by.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from protocol import AnyAction, AnyObservation, BrowseInteractive, BrowserOutput, BrowseUrl, Error, codes, new_id

from .._output import log_name
from ..plugins import Emit, PluginUnavailable, SandboxPlugin
from ._actions import ScriptError, Step, parse
from ._axtree import axtree_text
from ._dom import SNAPSHOT_JS
from ._session import BrowserSession
from ._steps import Deadline, StepFailed, run_step

DEFAULT_TIMEOUT_S = 30.0
OBSERVE_TIMEOUT_S = 10.0
CONTENT_CAP_CHARS = 200_000
"""Each of ``content`` and ``axtree``: an answer must fit in one broker message (1 MB)."""
SCREENSHOT_CAP_BYTES = 400_000
"""Base64 PNG bytes one answer carries; a bigger one is only in ``screenshot_path``."""
ERROR_CAP_CHARS = 1_000


class BrowserPlugin(SandboxPlugin):
    """``browse_url`` and ``browse_interactive``: one Chromium per session, in the lane ``browser``."""

    kinds = frozenset({"browse_url", "browse_interactive"})
    variant = "browser"
    modules = ("playwright",)
    lane = "browser"

    async def start(self) -> None:
        self._browser: BrowserSession | None = None
        self._lost = False
        """The browser died: the next answer says ``browser_restarted``."""
        self._lock = asyncio.Lock()

    async def handle(self, action: AnyAction, emit: Emit) -> AnyObservation:
        assert isinstance(action, (BrowseUrl, BrowseInteractive))
        async with self._lock:
            try:
                browser, restarted = await self._ensure()
            except PluginUnavailable as exc:
                return self._error(action, codes.PLUGIN_UNAVAILABLE, str(exc))
            except Exception as exc:  # noqa: BLE001 - Chromium or the driver would not start: say why
                return self._error(action, codes.SANDBOX_FAILED, f"the browser did not start: {_first_lines(exc)}")
            return await _Run(self, browser, action, restarted).answer()

    async def _ensure(self) -> tuple[BrowserSession, bool]:
        """The live browser, started (again) if need be, and whether it had died."""
        if self._browser is not None and self._browser.alive():
            return self._browser, False
        restarted = self._lost or self._browser is not None
        if self._browser is not None:
            await self._browser.aclose()
        self._browser = None
        browser = BrowserSession(self.ctx)
        await browser.start()
        self._browser, self._lost = browser, False
        return browser, restarted

    def lose(self) -> None:
        self._lost = True

    async def aclose(self) -> None:
        browser, self._browser = getattr(self, "_browser", None), None
        if browser is not None:
            await browser.aclose()

    def _error(self, action: AnyAction, code: str, message: str) -> Error:
        return Error(id=new_id(), cause=action.id, session_id=self.ctx.session_id, code=code, message=message)


class _Run:
    """One action: its steps, then the observation of where the browser is."""

    def __init__(self, plugin: BrowserPlugin, browser: BrowserSession, action: BrowseUrl | BrowseInteractive,
                 restarted: bool) -> None:
        self._plugin = plugin
        self._browser = browser
        self._action = action
        self._restarted = restarted
        self._deadline = Deadline(action.timeout_s or DEFAULT_TIMEOUT_S)
        self._last = ""
        self._error = ""

    async def answer(self) -> BrowserOutput:
        await self._steps()
        downloads, failed = await self._browser.take_downloads(self._deadline.left_s())
        if failed and not self._error:
            self._error = failed
        if not self._browser.alive():
            return self._dead(downloads)
        try:
            return await asyncio.wait_for(self._observe(downloads), OBSERVE_TIMEOUT_S)
        except (TimeoutError, self._browser.api.Error) as exc:
            if not self._browser.alive():
                return self._dead(downloads)
            self._error = self._error or f"the page could not be read: {_first_lines(exc)}"
            return self._output(downloads=downloads, url=_safe_url(self._browser))

    async def _steps(self) -> None:
        action = self._action
        if isinstance(action, BrowseUrl):
            steps = [Step(name="goto", args={"url": action.url}, line=1, source=f"goto({action.url!r})")]
        else:
            try:
                steps = parse(action.browser_actions)
            except ScriptError as exc:
                self._last, self._error = action.browser_actions.strip()[:ERROR_CAP_CHARS], str(exc)
                return
        cwd = self._plugin.ctx.shells.cwd()
        for step in steps:
            self._last = step.source
            try:
                await run_step(self._browser, step, self._deadline, cwd)
            except StepFailed as exc:
                self._error = f"line {step.line}: {exc}" if len(steps) > 1 else str(exc)
                return
            except self._browser.api.Error as exc:  # TimeoutError is one too
                prefix = f"line {step.line}: " if len(steps) > 1 else ""
                self._error = prefix + _first_lines(exc, self._deadline.timeout_s)
                return

    async def _observe(self, downloads: list[str]) -> BrowserOutput:
        browser, action = self._browser, self._action
        page = await browser.page()
        frames = browser.frame_prefixes(page)
        markdown = isinstance(action, BrowseUrl)
        passes = await asyncio.gather(*(f.evaluate(SNAPSHOT_JS, [prefix, markdown and f is page.main_frame])
                                        for f, prefix in frames.items()), return_exceptions=True)
        main = next((p for f, p in zip(frames, passes) if f is page.main_frame and isinstance(p, dict)), {})
        focused = next((p["focused"] for p in passes if isinstance(p, dict) and p.get("focused")), None)
        tree, tree_truncated = ("", False)
        if not markdown or action.return_axtree:
            tree, tree_truncated = await axtree_text(await browser.cdp(page), CONTENT_CAP_CHARS)
        content, truncated = (_cap(main.get("markdown") or "") if markdown else (tree, tree_truncated))
        shot, shot_path, shot_truncated = await self._screenshot(page) if action.screenshot else (None, None, False)
        pages = browser.pages()
        return self._output(
            url=page.url, title=main["title"] if "title" in main else await page.title(), content=content, axtree=tree if action.return_axtree else None,
            screenshot=shot, screenshot_path=shot_path, open_pages_urls=[p.url for p in pages],
            active_page_index=pages.index(page) if page in pages else 0, focused_element_bid=focused,
            downloads=downloads, truncated=truncated or (tree_truncated and action.return_axtree) or shot_truncated)

    async def _screenshot(self, page: Any) -> tuple[str | None, str, bool]:
        png = await page.screenshot(type="png", timeout=OBSERVE_TIMEOUT_S * 1000)
        directory = os.path.join(self._plugin.ctx.output_dir, "screenshots")
        path = os.path.join(directory, log_name(self._action.id).removesuffix(".log") + ".png")
        await asyncio.to_thread(_write, path, png)
        encoded = base64.b64encode(png).decode()
        if len(encoded) > SCREENSHOT_CAP_BYTES:
            return None, path, True
        return encoded, path, False

    def _dead(self, downloads: list[str]) -> BrowserOutput:
        self._plugin.lose()
        error = self._error or "the browser died"
        return self._output(downloads=downloads, last_browser_action_error=(
            f"{error}; the browser is gone (crashed or killed): the next action starts a new one")[:ERROR_CAP_CHARS])

    def _output(self, **fields: Any) -> BrowserOutput:
        fields.setdefault("last_browser_action_error", self._error[:ERROR_CAP_CHARS])
        return BrowserOutput(id=new_id(), cause=self._action.id, session_id=self._plugin.ctx.session_id,
                             last_browser_action=self._last, browser_restarted=self._restarted, **fields)


def _cap(text: str) -> tuple[str, bool]:
    if len(text) <= CONTENT_CAP_CHARS:
        return text, False
    return text[:CONTENT_CAP_CHARS], True


def _first_lines(exc: BaseException, timeout_s: float | None = None) -> str:
    """Playwright's message without its call log (``=== logs ===``, ``Call log:``), bounded."""
    text = str(exc).split("\nCall log:")[0].split("=========================== logs")[0].strip()
    text = text or type(exc).__name__
    if timeout_s is not None and "Timeout" in type(exc).__name__ + text:
        text += f" (the action's timeout_s is {timeout_s:g})"
    return text[:ERROR_CAP_CHARS]


def _safe_url(browser: BrowserSession) -> str:
    page = browser.active
    return page.url if page is not None and not page.is_closed() else ""


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
