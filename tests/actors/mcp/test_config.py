"""MCPConfig: the three sources, their merge order, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from actors.mcp import ENV_VAR, MCPConfig, McpConfigError, ShttpServer, StdioServer, host_config, parse, session_config


def test_a_toml_file_then_the_environment_then_the_spec_merge_in_that_order(tmp_path):
    (tmp_path / "mcp.toml").write_text('[[stdio_servers]]\nname = "git"\ncommand = "mcp-server-git"\n')
    env = {ENV_VAR: json.dumps({"shttp_servers": [{"name": "search", "url": "http://127.0.0.1:9/mcp", "timeout_s": 5}]})}
    host = host_config(str(tmp_path / "mcp.toml"), env)
    merged = session_config(host, {"stdio_servers": [{"name": "time", "command": "mcp-server-time", "args": ["-v"]}]})
    assert [s.name for s in merged.servers()] == ["git", "time", "search"]
    assert merged.stdio_servers[1] == StdioServer(name="time", command="mcp-server-time", args=["-v"])
    assert merged.shttp_servers == [ShttpServer(name="search", url="http://127.0.0.1:9/mcp", timeout_s=5)]


def test_the_environment_may_name_a_json_file(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"sse_servers": [{"name": "docs", "url": "https://docs.example/sse", "api_key": "k"}]}))
    assert host_config(None, {ENV_VAR: str(path)}).sse_servers[0].api_key == "k"


def test_no_source_is_an_empty_config():
    assert not host_config(None, {}) and session_config(MCPConfig(), {}) == MCPConfig()


@pytest.mark.parametrize("raw, field", [
    ({"stdio_servers": [{"name": "a", "command": "x", "cmd": "y"}]}, "mcp.stdio_servers[0]"),
    ({"stdio_servers": [{"name": "a", "command": ["x"]}]}, "mcp.stdio_servers[0].command"),
    ({"shttp_servers": [{"name": "a", "url": "http://h/mcp", "timeout_s": "soon"}]}, "mcp.shttp_servers[0].timeout_s"),
    ({"sse_servers": [{"name": "a", "url": "ftp://h"}]}, "mcp.sse_servers[0].url"),
    ({"stdio_servers": [{"name": "has space", "command": "x"}]}, "mcp.stdio_servers[0].name"),
    ({"servers": []}, "servers"),
])
def test_a_bad_field_is_an_error_naming_it(raw, field):
    with pytest.raises(McpConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(raw)


def test_a_name_defined_twice_names_both_places():
    host = parse({"stdio_servers": [{"name": "git", "command": "a"}]})
    with pytest.raises(McpConfigError) as clash:
        session_config(host, {"shttp_servers": [{"name": "git", "url": "http://h/mcp"}]})
    assert "mcp.shttp_servers[0].name" in str(clash.value) and "stdio_servers[0].name" in str(clash.value)
