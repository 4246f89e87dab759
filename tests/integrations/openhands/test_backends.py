"""The same runtime on corral's Docker backend and with its browser plugin; MCP through corral."""

from __future__ import annotations

import http.server
import threading

from openhands.events.action import BrowseURLAction, CmdRunAction, FileReadAction, FileWriteAction, MCPAction
from openhands.events.observation import BrowserOutputObservation, ErrorObservation, MCPObservation
from openhands.utils.async_utils import call_async_from_sync
import pytest

from .conftest import load_runtime


@pytest.mark.slow
def test_bash_and_files_in_a_docker_sandbox(docker_corral):
    runtime = load_runtime(docker_corral, startup_env={"NO_CHANGE_TIMEOUT_SECONDS": "1"})
    try:
        obs = runtime.run_action(CmdRunAction(command="cat /.dockerenv > /dev/null && echo in-docker"))
        assert obs.content == "in-docker" and obs.exit_code == 0
        runtime.run_action(FileWriteAction(path="note.txt", content="hello"))
        assert runtime.run_action(FileReadAction(path="note.txt")).content == "hello\n"
        assert runtime.run_action(CmdRunAction(command="sleep 50")).exit_code == -1
        assert runtime.run_action(CmdRunAction(command="C-c", is_input=True)).exit_code == 130
    finally:
        runtime.close()


@pytest.fixture
def page_server(tmp_path):
    (tmp_path / "index.html").write_text("<html><head><title>Corral page</title></head><body><h1>Hello from corral</h1></body></html>")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.slow
def test_browse_url_through_the_browser_plugin(local_corral, page_server):
    runtime = load_runtime(local_corral, browser=True)
    try:
        obs = runtime.run_action(BrowseURLAction(url=page_server))
        if isinstance(obs, ErrorObservation):
            pytest.skip(f"the browser plugin is not available to this worker: {obs.content}")
        assert isinstance(obs, BrowserOutputObservation)
        assert "Hello from corral" in obs.content
        assert obs.url.startswith(page_server)
        assert obs.screenshot.startswith("iVBOR")  # a PNG, base64
    finally:
        runtime.close()


def test_mcp_action_without_servers_is_a_clear_error(runtime):
    obs = call_async_from_sync(runtime.call_tool_mcp, 60, MCPAction(name="get_current_time", arguments={}))
    assert isinstance(obs, ErrorObservation)
    assert obs.content.startswith("corral: ")


@pytest.mark.slow
def test_mcp_action_reaches_openhands_stdio_server_in_the_sandbox(main_venv_corral):
    from openhands.core.config.mcp_config import MCPConfig, MCPStdioServerConfig

    from .conftest import load_runtime as load

    runtime = load(main_venv_corral, mcp_config=MCPConfig(stdio_servers=[
        MCPStdioServerConfig(name="time", command="mcp-server-time")]))
    try:
        obs = call_async_from_sync(runtime.call_tool_mcp, 60,
                                   MCPAction(name="get_current_time", arguments={"timezone": "UTC"}))
        assert isinstance(obs, MCPObservation), obs
        body = __import__("json").loads(obs.content)
        assert body["isError"] is False
        assert body["structuredContent"]["timezone"] == "UTC"
        assert obs.name == "get_current_time"
    finally:
        runtime.close()
