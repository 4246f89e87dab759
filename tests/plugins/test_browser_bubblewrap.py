"""The browser plugin in bubblewrap sandboxes: Playwright from the runtime copy of the worker's
distributions, the host's Chromium from /usr, as the unprivileged sandbox user, no network."""

from __future__ import annotations

import shutil

import pytest

from cli.up import Deployment, UpConfig
from protocol import BrowserOutput, Client
from workers.backends.bubblewrap import SANDBOX_UID

from ._browser_site import bid_of, serve
from .test_browser_lifecycle import kill_chromium

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
              pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (./dev setup)"),
              pytest.mark.slow, pytest.mark.timeout(300)]  # a first run copies the plugins' packages


@pytest.fixture
async def browser(nats_server, tmp_path):
    config = UpConfig(nats_url=nats_server.url, data_dir=str(tmp_path / "corral"), backend="bubblewrap", audit=False)
    async with Deployment(config) as dep:
        async with await Client.connect(dep.url) as c:
            async with await c.create_session(plugins=["browser"]) as s:
                assert s.info.backend == "bubblewrap"
                s.site = await serve(s, port=8000)
                yield s


async def test_chromium_runs_as_the_sandbox_user_and_fills_a_form(browser):
    form = await browser.browse_interactive(f"goto('{browser.site}/form.html')", screenshot=True)
    assert isinstance(form, BrowserOutput) and form.last_browser_action_error == "", form
    assert form.screenshot and form.screenshot_path.startswith("/outputs/")
    out = await browser.browse_interactive(f"fill('{bid_of(form, 'textbox')}', 'Ada')\n"
                                           f"click('{bid_of(form, 'button')}')")
    assert "got name=Ada colour=r" in out.content, out
    owner = await browser.cmd(f"ps -o uid= -p $(pgrep -f -- '--corral-session={browser.session_id}')")
    assert owner.content.split() == [str(SANDBOX_UID)], owner


async def test_a_page_is_markdown_and_a_killed_browser_comes_back(browser):
    page = await browser.browse(f"{browser.site}/index.html")
    assert "# Welcome home" in page.content and page.last_browser_action_error == "", page
    await kill_chromium(browser)
    out = await browser.browse(f"{browser.site}/second.html")
    if not out.browser_restarted:
        assert "browser is gone" in out.last_browser_action_error, out
        out = await browser.browse(f"{browser.site}/second.html")
    assert out.browser_restarted and out.title == "Second", out
