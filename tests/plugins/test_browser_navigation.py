"""The browser plugin in local sandboxes: pages as Markdown, history, tabs, failures in the answer."""

from __future__ import annotations

import base64

import pytest

from protocol import BrowserOutput, Error, codes

from ._browser_site import browser, bid_of, free_port, serve, started  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.timeout(120)


async def test_a_page_comes_back_as_markdown_without_hidden_text(browser):
    out = await browser.browse(f"{browser.site}/index.html")
    assert isinstance(out, BrowserOutput) and out.last_browser_action_error == "", out
    assert (out.url, out.title, out.browser_restarted) == (f"{browser.site}/index.html", "Home", False)
    assert "# Welcome home" in out.content and "Some **bold** text" in out.content, out.content
    assert f"[second page]({browser.site}/second.html)" in out.content
    assert "- first item\n- second item" in out.content and "| apple | 3 |" in out.content
    assert "hidden words" not in out.content and out.axtree is None and out.screenshot is None


async def test_a_screenshot_is_a_png_in_the_output_directory_and_the_tree_has_bids(browser):
    out = await browser.browse(f"{browser.site}/index.html", screenshot=True, return_axtree=True)
    assert base64.b64decode(out.screenshot)[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.screenshot_path.endswith(".png") and "/workspace" not in out.screenshot_path
    with open(out.screenshot_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "RootWebArea 'Home'" in out.axtree and "heading 'Welcome home'" in out.axtree, out.axtree
    assert bid_of(BrowserOutput(id="x", content=out.axtree), "link 'second page'")


async def test_back_and_forward_walk_the_history(browser):
    await browser.browse(f"{browser.site}/index.html")
    tree = await browser.browse_interactive(f"goto('{browser.site}/second.html')")
    assert tree.title == "Second" and "heading 'The second page'" in tree.content, tree
    back = await browser.browse_interactive("go_back()")
    assert (back.title, back.last_browser_action, back.last_browser_action_error) == ("Home", "go_back()", "")
    forward = await browser.browse_interactive("go_forward()")
    assert forward.url == f"{browser.site}/second.html"
    nowhere = await browser.browse_interactive("go_forward()")
    assert "no page to go forward" in nowhere.last_browser_action_error and nowhere.title == "Second"


async def test_tabs_open_focus_and_close(browser):
    await browser.browse(f"{browser.site}/index.html")
    opened = await browser.browse_interactive(f"new_tab()\ngoto('{browser.site}/second.html')")
    assert opened.open_pages_urls == [f"{browser.site}/index.html", f"{browser.site}/second.html"]
    assert opened.active_page_index == 1 and opened.title == "Second"
    first = await browser.browse_interactive("tab_focus(0)")
    assert (first.active_page_index, first.title) == (0, "Home")
    missing = await browser.browse_interactive("tab_focus(5)")
    assert "no tab 5" in missing.last_browser_action_error
    closed = await browser.browse_interactive("tab_close()")
    assert closed.open_pages_urls == [f"{browser.site}/second.html"] and closed.active_page_index == 0


async def test_a_refused_connection_is_an_error_in_the_answer_and_the_browser_lives_on(browser):
    await browser.browse(f"{browser.site}/index.html")
    out = await browser.browse(f"http://127.0.0.1:{free_port()}/")
    assert isinstance(out, BrowserOutput), out
    assert "ERR_CONNECTION_REFUSED" in out.last_browser_action_error, out
    again = await browser.browse(f"{browser.site}/second.html")
    assert again.title == "Second" and again.last_browser_action_error == "" and not again.browser_restarted


async def test_a_page_that_never_answers_times_out_within_timeout_s(browser):
    port = free_port()
    await started(browser, f"python3 -u -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
                           f"s.listen(); print('listen' + 'ing'); time.sleep(600)\"", shell="hang", says="listening")
    out = await browser.browse(f"http://127.0.0.1:{port}/", timeout_s=2)
    assert "Timeout" in out.last_browser_action_error and "timeout_s is 2" in out.last_browser_action_error, out
    assert (await browser.browse(f"{browser.site}/second.html")).title == "Second"


async def test_browse_in_a_session_without_the_plugin_is_plugin_not_enabled(client):
    async with await client.create_session() as s:
        out = await s.browse("http://127.0.0.1:1/")
        assert isinstance(out, Error) and out.code == codes.PLUGIN_NOT_ENABLED, out
        assert "browser" in out.message
