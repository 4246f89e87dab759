"""``corral bench --browser``: what the browser plugin costs, measured through NATS like an agent sees it.

* ``browse_url_first``: the first ``browse_url`` of a new session, Playwright's driver and
  Chromium's lazy start included;
* ``browse_url_warm``: ``browse_url`` of a small page served inside the sandbox, browser warm;
* ``click``: ``browse_interactive("click(bid)")`` on a button whose handler changes the page (the
  answer carries the accessibility tree);
* ``idle_rss``: the executor's RSS in an idle sandbox without plugins and with ``plugins=["browser"]``
  declared but unused, and the PSS of the executor's whole process tree once the browser runs.

The page is served by ``python3 -m http.server`` started in the sandbox itself (so a Docker sandbox
with ``network: none`` works), on a port the sandbox picks.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

from protocol import BrowserOutput, Client

from .bench import _ms

PAGE = """<!doctype html><html><head><title>Bench</title></head><body>
<h1>Benchmark page</h1><p>A small page with a <a href="#x">link</a> and a counter.</p>
<button onclick="document.getElementById('n').textContent = +document.getElementById('n').textContent + 1">Count</button>
<p id="n">0</p></body></html>"""
SERVE = ("python3 -u -c \"import http.server, socketserver, functools; "
         "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='bench-site'); "
         "h.log_message = lambda *a: None; s = socketserver.TCPServer(('127.0.0.1', 0), h); "
         "print('port', s.server_address[1], 'ready', flush=True); s.serve_forever()\"")
TREE_RSS = """import os
shell = os.getppid()  # this script's parent is the shell; the shell's parent is the executor
root = int(open(f"/proc/{shell}/stat").read().rsplit(")", 1)[1].split()[1])
kids = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        kids.setdefault(int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]), []).append(int(pid))
    except OSError:
        continue
def pss_kb(pid):
    try:
        return sum(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
    except OSError:
        return 0
todo, total = [root], 0
while todo:
    pid = todo.pop()
    total += pss_kb(pid)
    todo += kids.get(pid, [])
print(total)
"""
"""The proportional set size (kB: shared pages divided among the processes that map them) of the
executor and everything under it; RSS would count Chromium's shared libraries once per process."""


async def _serve(session: Any) -> str:
    """Serve the page from inside the sandbox; its URL once the server said it listens."""
    await session.write_file("bench-site/index.html", PAGE)
    out = await session.cmd(SERVE, shell="bench-web", soft_timeout_s=1.0)
    seen = out.content
    for _ in range(30):
        if match := re.search(r"port (\d+) ready", seen):
            return f"http://127.0.0.1:{match.group(1)}/index.html"
        out = await session.cmd("", shell="bench-web", is_input=True, soft_timeout_s=1.0)
        seen += out.content
    raise RuntimeError(f"the page server in the sandbox did not start: {seen!r}")


def _checked(out: Any, what: str) -> BrowserOutput:
    if not isinstance(out, BrowserOutput) or out.last_browser_action_error:
        raise RuntimeError(f"unexpected answer to {what}: {out!r}")
    return out


async def _timed(call: Any, what: str) -> tuple[float, BrowserOutput]:
    t = time.perf_counter()
    out = await call
    return time.perf_counter() - t, _checked(out, what)


async def _rss_kb(session: Any, tree: bool = False) -> int:
    if tree:
        await session.write_file("bench-site/tree_rss.py", TREE_RSS)
    command = "python3 bench-site/tree_rss.py" if tree else "awk '/VmRSS/ {print $2}' /proc/$PPID/status"
    return int((await session.cmd(command)).content.strip())


async def _idle_rss(client: Client, spec: dict[str, Any], n: int = 3) -> float:
    sessions = [await client.create_session(**spec) for _ in range(n)]
    try:
        return round(statistics.median([await _rss_kb(s) for s in sessions]) / 1024, 1)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


async def _firsts(client: Client, spec: dict[str, Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        async with await client.create_session(**spec, plugins=["browser"]) as session:
            url = await _serve(session)
            elapsed, _ = await _timed(session.browse(url), "the first browse_url")
            samples.append(elapsed)
    return samples


async def browser_bench(client: Client, backend: str | None, n: int, *, first_n: int = 3) -> dict[str, Any]:
    """The browser plugin's numbers on ``backend`` (None: the deployment's default), ``n`` warm samples each."""
    spec: dict[str, Any] = {"backend": backend} if backend else {}
    results: dict[str, Any] = {"backend": backend or "default"}
    results["browse_url_first"] = _ms(await _firsts(client, spec, first_n))
    async with await client.create_session(**spec, plugins=["browser"]) as session:
        url = await _serve(session)
        for _ in range(5):  # warm up: Chromium's caches, the page's first layout
            await _timed(session.browse(url), "browse_url")
        results["browse_url_warm"] = _ms([(await _timed(session.browse(url), "browse_url"))[0] for _ in range(n)])
        tree = (await _timed(session.browse_interactive(f"goto({url!r})"), "goto"))[1]
        match = re.search(r"\[([a-z]*\d+)\] button 'Count'", tree.content)
        if match is None:
            raise RuntimeError(f"no Count button in the tree: {tree.content!r}")
        click = f"click({match.group(1)!r})"
        results["click"] = _ms([(await _timed(session.browse_interactive(click), click))[0] for _ in range(n)])
        browser_tree_mb = round(await _rss_kb(session, tree=True) / 1024, 1)
    results["idle_rss"] = {"without_mb": await _idle_rss(client, spec),
                           "with_browser_declared_mb": await _idle_rss(client, {**spec, "plugins": ["browser"]}),
                           "executor_tree_pss_with_browser_running_mb": browser_tree_mb}
    return results
