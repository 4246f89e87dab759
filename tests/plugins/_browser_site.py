"""Test pages for the browser plugin, served from inside the sandbox by ``python3 -m http.server``.

``serve(session)`` writes the pages with ``file_write`` and starts the server through ``cmd_run``
in a shell of its own; it returns once the server said it listens (its own line, printed after
the bind), so no test waits on a sleep.
"""

from __future__ import annotations

import re
import socket

import pytest

from protocol import BrowserOutput

PAGES = {
    "index.html": """<!doctype html><html><head><title>Home</title></head><body>
<h1>Welcome home</h1><p>Some <b>bold</b> text and a <a href="/second.html">second page</a>.</p>
<ul><li>first item</li><li>second item</li></ul>
<table><tr><th>name</th><th>qty</th></tr><tr><td>apple</td><td>3</td></tr></table>
<p style="display:none">hidden words</p>
</body></html>""",
    "second.html": """<!doctype html><html><head><title>Second</title></head><body>
<h1>The second page</h1><a href="/index.html">back home</a></body></html>""",
    "form.html": """<!doctype html><html><head><title>Form</title></head><body>
<form action="/result.html" method="get">
<label>Name <input name="name" value="prefilled"></label>
<label>Colour <select name="colour"><option value="r">red</option><option value="g">green</option></select></label>
<label>Note <input name="note" value="to be cleared"></label>
<button type="submit">Send</button>
</form></body></html>""",
    "result.html": """<!doctype html><html><head><title>Result</title></head><body>
<p id="out"></p><script>
const q = new URLSearchParams(location.search);
document.getElementById('out').textContent = 'got name=' + q.get('name') + ' colour=' + q.get('colour')
  + ' note=[' + q.get('note') + ']';
</script></body></html>""",
    "widgets.html": """<!doctype html><html><head><title>Widgets</title>
<style>#hov:hover { color: red; } .spacer { height: 3000px; }</style></head><body>
<button id="hov" onmouseover="document.getElementById('hovered').textContent = 'hover seen'">Hover me</button>
<p id="hovered">not hovered</p>
<input id="box" aria-label="Focus box">
<label>Attach <input type="file" id="up" onchange="document.getElementById('file').textContent = 'chose ' + this.files[0].name"></label>
<p id="file">no file</p>
<a href="/data.txt" download="report.txt">Get the report</a>
<a href="/second.html" target="_blank">Open in a tab</a>
<p id="pos">at top</p>
<div class="spacer"></div><p>bottom of page</p>
<script>addEventListener('scroll', () => { document.getElementById('pos').textContent = 'scrolled to ' + scrollY; });</script>
</body></html>""",
    "data.txt": "downloaded bytes\n",
    "grow.html": """<!doctype html><html><head><title>Grow</title></head><body>
<button onclick="const b = document.createElement('button'); b.textContent = 'New one'; document.body.prepend(b)">Add</button>
</body></html>""",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(session, port: int | None = None, directory: str = "site") -> str:
    """Write the pages into ``directory`` (relative to the main shell) and serve them; the base URL."""
    port = port or free_port()
    for name, text in PAGES.items():
        await session.write_file(f"{directory}/{name}", text)
    await started(session, f"python3 -u -m http.server --bind 127.0.0.1 --directory {directory} {port}",
                  shell="web", says="Serving HTTP")
    return f"http://127.0.0.1:{port}"


async def started(session, command: str, *, shell: str, says: str) -> None:
    """Run a server in its own shell and return once its output says ``says`` (read as it comes)."""
    out = await session.cmd(command, shell=shell, soft_timeout_s=1.0)
    seen = out.content
    for _ in range(30):
        if says in seen:
            return
        assert out.status == "running", out
        out = await session.cmd("", shell=shell, is_input=True, soft_timeout_s=1.0)
        seen += out.content
    raise AssertionError(f"{command!r} did not say {says!r}: {seen!r}")


def bid_of(output: BrowserOutput, pattern: str) -> str:
    """The bid of the first tree line whose text after ``[bid] `` starts with ``pattern``."""
    match = re.search(r"\[([a-z]*[0-9]+)\] " + re.escape(pattern), output.content)
    assert match, f"no {pattern!r} in the tree:\n{output.content}"
    return match.group(1)


@pytest.fixture
async def browser(client):
    """A session with the browser plugin on the test deployment's default backend, and the URL of
    the test site it serves inside its sandbox (``browser.site``)."""
    async with await client.create_session(plugins=["browser"]) as s:
        s.site = await serve(s)
        yield s
