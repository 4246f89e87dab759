"""The browser's life in a local sandbox: started on first use, state kept across actions, a killed
Chromium started afresh (and said so), the lane of its own."""

from __future__ import annotations

import asyncio

import pytest

from ._browser_site import browser, serve  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.timeout(120)


async def kill_chromium(session) -> None:
    """SIGKILL this session's Chromium (found by the marker switch only its browser process carries)
    and return once the process is gone."""
    marker = f"--corral-session={session.session_id}"
    out = await session.cmd(f"pids=$(pgrep -f -- '{marker}'); [ -n \"$pids\" ] && kill -KILL $pids; "
                            "while kill -0 $pids 2>/dev/null; do sleep 0.05; done; echo killed $pids")
    assert out.exit_code == 0 and out.content.startswith("killed "), out


async def test_the_browser_starts_on_first_use_and_keeps_its_state(browser, client):
    info = await client.get_session(browser.session_id)
    assert [(p.name, p.state) for p in info.plugins] == [("browser", "declared")]
    first = await browser.browse(f"{browser.site}/index.html")
    await browser.browse_interactive("new_tab()")
    again = await browser.browse(f"{browser.site}/second.html")
    assert not first.browser_restarted and again.open_pages_urls == [f"{browser.site}/index.html",
                                                                        f"{browser.site}/second.html"]
    info = await client.get_session(browser.session_id)
    assert [(p.name, p.state) for p in info.plugins] == [("browser", "ready")]


async def test_a_killed_browser_is_started_afresh_and_the_answer_says_so(browser):
    await browser.browse(f"{browser.site}/index.html")
    await browser.browse_interactive("new_tab()")
    await kill_chromium(browser)
    out = await browser.browse(f"{browser.site}/second.html")
    if not out.browser_restarted:  # the action raced the driver's news of the death: it says so
        assert "browser is gone" in out.last_browser_action_error, out
        out = await browser.browse(f"{browser.site}/second.html")
    assert out.browser_restarted and out.last_browser_action_error == "" and out.title == "Second", out
    assert out.open_pages_urls == [f"{browser.site}/second.html"]  # the old tabs died with it
    assert not (await browser.browse(f"{browser.site}/index.html")).browser_restarted


async def test_a_long_browser_action_does_not_block_the_shell(browser):
    slow = asyncio.ensure_future(browser.browse_interactive("noop(3000)"))
    shell = await browser.cmd("echo quick")
    assert shell.content.strip() == "quick" and not slow.done()
    assert (await slow).last_browser_action_error == ""
