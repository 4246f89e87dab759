"""One instance of every event kind, with non-default values in every field that has one."""

from protocol import (
    ActionHeld,
    BrowseInteractive,
    BrowserOutput,
    BrowseUrl,
    CmdChunk,
    CmdOutput,
    CmdRun,
    Confirm,
    ConfirmResult,
    Error,
    ErrorReply,
    FileContent,
    FileEdit,
    FileEdited,
    FileRead,
    FileWrite,
    FileWritten,
    IPythonRun,
    McpCall,
    McpList,
    PortInfo,
    Resources,
    SessionInfo,
    SessionList,
    SessionSpec,
    VscodeInfo,
    WorkerInfo,
    WorkerList,
)

ACTIONS = [
    CmdRun(id="a1", command="echo hi", shell="build", is_input=False, soft_timeout_s=2.5, timeout_s=30.0,
           cwd="/workspace", env={"A": "1"}),
    FileRead(id="a2", path="/etc/hostname", start_line=1, end_line=3, encoding="text"),
    FileWrite(id="a3", path="x.bin", content="AAEC", encoding="base64"),
    FileEdit(id="a4", command="str_replace", path="/w/f.py", old_str="a", new_str="b"),
    FileEdit(id="a4b", command="view", path="/w/f.py", view_range=[1, -1]),
    IPythonRun(id="a5", code="1+1", kernel="k"),
    BrowseUrl(id="a6", url="http://localhost:8000/"),
    BrowseInteractive(id="a7", browser_actions="click('ok')"),
    McpCall(id="a8", server="fs", tool="read", arguments={"path": "/x", "n": 3}),
    McpList(id="a9", server="fs"),
    Confirm(id="a10", action_id="a1", approve=False),
    BrowseUrl(id="a11", url="http://127.0.0.1:8000/a", return_axtree=True, screenshot=True, timeout_s=5.0),
    BrowseInteractive(id="a12", browser_actions="fill('12', 'x')\nclick('13')", return_axtree=True, screenshot=True),
]

OBSERVATIONS = [
    CmdOutput(id="o1", cause="a1", session_id="s1", content="hi\n", status="completed", exit_code=0,
              working_dir="/workspace", pid=42, shell="build", truncated=True, full_output_path="/tmp/o.log", hint="h"),
    CmdChunk(id="o2", cause="a1", session_id="s1", seq=3, data="partial"),
    FileContent(id="o3", cause="a2", session_id="s1", path="/etc/hostname", content="box\n", total_lines=1),
    FileWritten(id="o4", cause="a3", session_id="s1", path="/w/x.bin", size=3),
    FileEdited(id="o5", cause="a4", session_id="s1", path="/w/f.py", content="edited", diff="--- a\n+++ b\n"),
    Error(id="o6", cause=None, session_id="s1", code="bad_payload", message="not msgpack"),
    ActionHeld(id="o7", cause="a1", session_id="s1", reason="rm -rf needs a person", gate="rules", timeout_s=60.0),
    ConfirmResult(id="o8", cause="a10", session_id="s1", action_id="a1", approved=False),
    BrowserOutput(id="o9", cause="a11", session_id="s1", url="http://127.0.0.1:8000/a", title="A", content="# A",
                  axtree="[1] RootWebArea 'A'", screenshot="iVBORw0=", screenshot_path="/tmp/out/s.png",
                  open_pages_urls=["http://127.0.0.1:8000/a"], active_page_index=0, focused_element_bid="13",
                  last_browser_action="click('13')", last_browser_action_error="", downloads=["/tmp/out/d.txt"],
                  browser_restarted=True, truncated=True),
]

REPLIES = [
    SessionInfo(session_id="s1", worker_id="w1", backend="local", status="ready", created_at=1.5, labels={"t": "1"}),
    SessionList(sessions=[SessionInfo(session_id="s1", worker_id="w1", backend="local", status="lost", reason="gone")]),
    WorkerList(workers=[WorkerInfo(worker_id="w1", backend="local", capacity=8, running=2, starting=1, host="h")]),
    ErrorReply(code="no_capacity", message="full"),
    PortInfo(session_id="s1", port=8000, host="127.0.0.1", host_port=50001, url="http://127.0.0.1:50001/", purpose="apps"),
    VscodeInfo(session_id="s1", url="http://127.0.0.1:40001/?tkn=t&folder=/w", host="127.0.0.1", host_port=40001,
               token="t", workdir="/w"),
    SessionInfo(session_id="s2", worker_id="w1", backend="docker", status="ready",
                ports=[PortInfo(session_id="s2", port=80, host="127.0.0.1", host_port=50002, url="http://127.0.0.1:50002/")]),
]

SPECS = [
    SessionSpec(backend="local", image="img", env={"K": "V"}, workdir="/w", labels={"l": "v"}, idle_timeout_s=60,
                timeout_s=10, soft_timeout_s=2, plugins=["jupyter"], resources=Resources(cpus=1.5, memory_mb=512, pids=256),
                network="egress", mcp={"fs": {"command": "mcp-fs"}}),
]
