"""browse_interactive on forms and widgets in a local sandbox: fill, select, clear, submit by click
and by Enter, focus, hover, scroll, file upload, target=_blank and downloads."""

from __future__ import annotations

import os

import pytest

from ._browser_site import browser, bid_of, serve  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.timeout(120)


async def test_a_filled_form_submitted_by_a_click_shows_its_values(browser):
    form = await browser.browse_interactive(f"goto('{browser.site}/form.html')")
    name, colour = bid_of(form, "textbox 'Name'"), bid_of(form, "combobox 'Colour'")
    note, send = bid_of(form, "textbox 'Note'"), bid_of(form, "button 'Send'")
    assert "value='prefilled'" in form.content, form.content
    out = await browser.browse_interactive(f"fill('{name}', 'Ada')\nselect_option('{colour}', 'green')\n"
                                           f"clear('{note}')\nclick('{send}')")
    assert out.last_browser_action_error == "" and out.last_browser_action == f"click('{send}')", out
    assert out.title == "Result" and "got name=Ada colour=g note=[]" in out.content, out.content


async def test_enter_in_a_field_submits_the_form(browser):
    form = await browser.browse_interactive(f"goto('{browser.site}/form.html')")
    name = bid_of(form, "textbox 'Name'")
    out = await browser.browse_interactive(f"fill('{name}', 'Grace')\npress('{name}', 'Enter')")
    assert "got name=Grace colour=r" in out.content, out.content


async def test_focus_names_the_focused_element(browser):
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    box = bid_of(page, "textbox 'Focus box'")
    assert page.focused_element_bid is None
    out = await browser.browse_interactive(f"focus('{box}')")
    assert out.focused_element_bid == box and f"[{box}] textbox 'Focus box', focused" in out.content, out.content


async def test_hover_fires_the_pages_mouseover(browser):
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    out = await browser.browse_interactive(f"hover('{bid_of(page, 'button')}')")
    assert "hover seen" in out.content and "not hovered" not in out.content, out.content


async def test_scroll_moves_the_page_and_its_listeners_see_it(browser):
    await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    out = await browser.browse_interactive("scroll(0, 500)")
    assert "scrolled to 500" in out.content, out.content


async def test_upload_file_gives_the_page_the_file(browser):
    await browser.write_file("upload-me.txt", "payload\n")
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    chooser = bid_of(page, "button 'Attach'")
    out = await browser.browse_interactive(f"upload_file('{chooser}', 'upload-me.txt')")
    assert out.last_browser_action_error == "" and "chose upload-me.txt" in out.content, out
    missing = await browser.browse_interactive(f"upload_file('{chooser}', 'nope.txt')")
    assert "no such file in the sandbox" in missing.last_browser_action_error


async def test_a_download_link_saves_into_the_output_directory(browser):
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    link = bid_of(page, "link 'Get the report'")
    out = await browser.browse_interactive(f"click('{link}')")
    assert out.last_browser_action_error == "" and len(out.downloads) == 1, out
    path = out.downloads[0]
    assert os.path.basename(path) == "report.txt" and "/downloads/" in path
    workspace = (await browser.cmd("pwd")).content.strip()
    assert not path.startswith(workspace + "/"), (path, workspace)
    with open(path) as f:
        assert f.read() == "downloaded bytes\n"
    assert (await browser.browse_interactive("noop(0)")).downloads == []


async def test_a_target_blank_link_opens_a_tab_that_becomes_active(browser):
    page = await browser.browse_interactive(f"goto('{browser.site}/widgets.html')")
    link = bid_of(page, "link 'Open in a tab'")
    out = await browser.browse_interactive(f"click('{link}')")
    assert out.open_pages_urls == [f"{browser.site}/widgets.html", f"{browser.site}/second.html"], out
    assert out.active_page_index == 1 and out.title == "Second"
