"""Element ids (bids) and the action language: stable ids, unknown ids, scripts that must not run."""

from __future__ import annotations

import pytest

from ._browser_site import browser, bid_of, serve  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.timeout(120)


async def test_a_bid_keeps_naming_its_element_and_only_new_elements_get_new_ones(browser):
    first = await browser.browse_interactive(f"goto('{browser.site}/grow.html')")
    add = bid_of(first, "button 'Add'")
    second = await browser.browse_interactive(f"click('{add}')")
    assert bid_of(second, "button 'Add'") == add
    new = bid_of(second, "button 'New one'")
    assert new != add and f"[{new}]" not in first.content
    third = await browser.browse_interactive(f"click('{add}')")
    assert bid_of(third, "button 'Add'") == add and third.content.count("button 'New one'") == 2


async def test_an_unknown_bid_is_an_error_and_the_page_stays(browser):
    await browser.browse_interactive(f"goto('{browser.site}/grow.html')")
    out = await browser.browse_interactive("click('99999')")
    assert "no element with bid '99999'" in out.last_browser_action_error, out
    assert out.title == "Grow" and "button 'Add'" in out.content


@pytest.mark.parametrize("script, message", [
    ("__import__('os').system('touch /tmp/pwned')", "call an action by its plain name"),
    ("click(x)", "must be literals"),
    ("open_the_pod_bay_doors()", "unknown action 'open_the_pod_bay_doors'"),
    ("click('1'", "not valid Python"),
    ("x = 1", "only calls of browser actions"),
    ("click('1', button='sideways')", "button must be one of"),
])
async def test_a_bad_script_runs_nothing_and_says_which_line(browser, script, message):
    await browser.browse_interactive(f"goto('{browser.site}/index.html')")
    out = await browser.browse_interactive(f"goto('{browser.site}/second.html')\n{script}")
    assert message in out.last_browser_action_error and "line 2" in out.last_browser_action_error, out
    assert out.title == "Home"  # the goto of line 1 did not run either


async def test_steps_stop_at_the_first_failure(browser):
    await browser.browse_interactive(f"goto('{browser.site}/index.html')")
    out = await browser.browse_interactive(f"click('99999')\ngoto('{browser.site}/second.html')")
    assert out.last_browser_action == "click('99999')" and out.last_browser_action_error.startswith("line 1:")
    assert out.title == "Home"
