"""The browser plugin in Docker sandboxes: the browser image variant, Chromium as uid 1000 in a
container with no network, pages served inside it, driven through a whole worker."""

from __future__ import annotations

import asyncio
import base64

import aiodocker
import pytest

from protocol import BrowserOutput

from ..workers.backends.test_docker import ENGINE, docker_deployment
from ._browser_site import bid_of, serve

pytestmark = [pytest.mark.skipif(not ENGINE, reason="no Docker engine answers (dockerd / DOCKER_HOST)"),
              pytest.mark.slow, pytest.mark.timeout(600)]  # a first run builds the variant image (./dev test prepares it)


@pytest.fixture(scope="session")
def browser_image() -> str:
    """The runtime image with the browser variant, found (or built, once per test session)."""
    from images import ensure_runtime_image

    async def ensure() -> str:
        async with aiodocker.Docker() as docker:
            return await ensure_runtime_image(docker, variants=["browser"])
    return asyncio.run(ensure())


@pytest.fixture
async def browser(nats_server, tmp_path, browser_image):
    async with docker_deployment(nats_server.url, str(tmp_path / "w"), browser_image, prefix="wb") as c:
        async with await c.create_session(plugins=["browser"], network="none") as s:
            s.site = await serve(s, port=8000)
            yield s


async def test_chromium_runs_as_the_sandbox_user_and_renders_a_page_served_inside(browser):
    out = await browser.browse(f"{browser.site}/index.html", screenshot=True)
    assert isinstance(out, BrowserOutput) and out.last_browser_action_error == "", out
    assert out.title == "Home" and "# Welcome home" in out.content
    assert base64.b64decode(out.screenshot)[:4] == b"\x89PNG"
    shown = await browser.cmd(f"head -c 4 {out.screenshot_path} | od -c | head -1; "
                              f"ps -o uid= -p $(pgrep -f -- '--corral-session={browser.session_id}')")
    assert "P   N   G" in shown.content and shown.content.split()[-1] == "1000", shown


async def test_a_form_is_filled_and_submitted(browser):
    form = await browser.browse_interactive(f"goto('{browser.site}/form.html')")
    out = await browser.browse_interactive(f"fill('{bid_of(form, 'textbox')}', 'Ada')\n"
                                           f"click('{bid_of(form, 'button')}')")
    assert "got name=Ada colour=r" in out.content, out


async def test_with_network_none_only_the_sandbox_is_reachable(browser):
    out = await browser.browse("http://example.com/", timeout_s=10)
    assert "net::ERR_INTERNET_DISCONNECTED" in out.last_browser_action_error, out
    assert (await browser.browse(f"{browser.site}/second.html")).title == "Second"


async def test_a_download_lands_in_the_output_directory(browser):
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    link = bid_of(page, "link 'Get the report'")
    out = await browser.browse_interactive(f"click('{link}')")
    assert len(out.downloads) == 1 and not out.downloads[0].startswith("/workspace/"), out
    assert (await browser.cmd(f"cat '{out.downloads[0]}'")).content.strip() == "downloaded bytes"
