"""Running one parsed step (``_actions.Step``) against the session's browser.

Element actions first look their bid up (an unknown bid fails at once, not after a timeout), then
act with Playwright's actionability checks bounded by ``ELEMENT_TIMEOUT_S`` (and the action's
deadline). After a step that may navigate, the page is given until its ``load`` event (bounded by
``SETTLE_TIMEOUT_S``) so the answer shows where the step led; a page still loading after that is
shown as it is. Playwright waits itself until a navigation a click or key press started has
committed, so the page read afterwards is the new one. A download a click on a ``download`` link
starts is waited for; one a server starts (``Content-Disposition``) after the click's answer is
listed in the next answer's ``downloads``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._actions import Step
from ._dom import BID, DOWNLOAD_LINK_JS, IS_FILE_INPUT_JS, SCROLL_JS, bid_selector
from ._session import BrowserSession

ELEMENT_TIMEOUT_S = 5.0
SETTLE_TIMEOUT_S = 5.0


class StepFailed(Exception):
    """A step that could not be done (the message is for the agent); the browser lives on."""


class Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._end = time.monotonic() + timeout_s

    def left_s(self) -> float:
        return max(0.001, self._end - time.monotonic())

    def ms(self, cap_s: float | None = None) -> float:
        """Milliseconds left (at most ``cap_s``), as Playwright's ``timeout=`` takes them."""
        left = self.left_s() if cap_s is None else min(cap_s, self.left_s())
        return max(1.0, left * 1000)


async def run_step(browser: BrowserSession, step: Step, deadline: Deadline, cwd: str) -> None:
    """Do ``step``; StepFailed for what the agent asked that cannot be done, Playwright's errors
    (a timeout, a closed browser) for the caller to translate."""
    args = step.args
    page = await browser.page()
    match step.name:
        case "goto":
            await page.goto(args["url"], timeout=deadline.ms(), wait_until="load")
            return  # it waited for the load event itself
        case "go_back" | "go_forward":
            back = step.name == "go_back"
            if not await _can_go(page, back):
                raise StepFailed(f"there is no page to go {'back' if back else 'forward'} to")
            await (page.go_back if back else page.go_forward)(timeout=deadline.ms(), wait_until="load")
            return
        case "noop":
            await page.wait_for_timeout(min(args["wait_ms"], deadline.left_s() * 1000))
        case "scroll":
            await page.evaluate(SCROLL_JS, [args["delta_x"], args["delta_y"]])
        case "new_tab":
            browser.active = await browser.context.new_page()
        case "tab_focus":
            pages = browser.pages()
            if not 0 <= args["index"] < len(pages):
                raise StepFailed(f"there is no tab {args['index']} (tabs: 0..{len(pages) - 1})")
            browser.active = pages[args["index"]]
            await browser.active.bring_to_front()
        case "tab_close":
            await page.close()
            await browser.page()
            await browser.active.bring_to_front()
        case _:
            await _element_step(browser, page, step, deadline, cwd)
            if step.name in ("click", "dblclick", "press"):
                await browser.adopt_new_tabs(min(SETTLE_TIMEOUT_S, deadline.left_s()))
    await settle(browser, deadline)


async def _element_step(browser: BrowserSession, page: Any, step: Step, deadline: Deadline, cwd: str) -> None:
    args = step.args
    timeout = deadline.ms(ELEMENT_TIMEOUT_S)
    if step.name == "drag_and_drop":
        source, target = await locate(browser, page, args["from_bid"]), await locate(browser, page, args["to_bid"])
        await source.drag_to(target, timeout=timeout)
        return
    element = await locate(browser, page, args["bid"])
    match step.name:
        case "fill":
            await element.fill(args["value"], timeout=timeout)
        case "clear":
            await element.clear(timeout=timeout)
        case "select_option":
            await element.select_option(args["options"], timeout=timeout)
        case "click" | "dblclick":
            act = element.click if step.name == "click" else element.dblclick
            if not await element.evaluate(DOWNLOAD_LINK_JS):
                await act(button=args["button"], modifiers=args["modifiers"], timeout=timeout)
                return
            # a link with a download attribute: the download begins after the click returns (once
            # the response starts), so wait for it here and the answer lists the file
            async with page.expect_download(timeout=deadline.ms(SETTLE_TIMEOUT_S)):
                await act(button=args["button"], modifiers=args["modifiers"], timeout=timeout)
        case "hover":
            await element.hover(timeout=timeout)
        case "focus":
            await element.focus(timeout=timeout)
        case "press":
            await element.press(args["key_comb"], timeout=timeout)
        case "upload_file":
            await _upload(page, element, args["file"], cwd, timeout)
        case _:
            raise AssertionError(f"no step {step.name!r}")


async def locate(browser: BrowserSession, page: Any, bid: str) -> Any:
    """The element named ``bid`` on ``page`` (in the frame its prefix names), or StepFailed."""
    match = BID.fullmatch(bid)
    frames = {prefix: frame for frame, prefix in browser.frame_prefixes(page).items()}
    frame = frames.get(match.group(1)) if match else None
    if frame is None:
        raise StepFailed(f"no element with bid {bid!r} on this page (bids are the [numbers] of the accessibility tree)")
    element = frame.locator(bid_selector(bid))
    if await element.count() == 0:
        raise StepFailed(f"no element with bid {bid!r} on this page (it may have gone: read the tree again)")
    return element.first


async def _upload(page: Any, element: Any, files: str | list[str], cwd: str, timeout: float) -> None:
    paths = [os.path.join(cwd, f) for f in ([files] if isinstance(files, str) else files)]
    if missing := [p for p in paths if not os.path.isfile(p)]:
        raise StepFailed(f"no such file in the sandbox: {missing[0]}")
    if await element.evaluate(IS_FILE_INPUT_JS):
        await element.set_input_files(paths, timeout=timeout)
        return
    async with page.expect_file_chooser(timeout=timeout) as chooser:  # a button that opens the file dialog
        await element.click(timeout=timeout)
    await (await chooser.value).set_files(paths, timeout=timeout)


async def settle(browser: BrowserSession, deadline: Deadline) -> None:
    """Give the active page until its load event (bounded); a slow page is shown as it stands."""
    page = await browser.page()
    try:
        await page.wait_for_load_state("load", timeout=deadline.ms(SETTLE_TIMEOUT_S))
    except browser.api.TimeoutError:
        pass  # not an error of the step: the answer shows the page as far as it got


async def _can_go(page: Any, back: bool) -> bool:
    """Is there a history entry that way? (The Navigation API knows; where it is missing, try.)"""
    script = "() => window.navigation ? navigation.canGoBack : true" if back else \
        "() => window.navigation ? navigation.canGoForward : true"
    return bool(await page.evaluate(script))
