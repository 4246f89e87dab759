"""The llm analyzer against a real HTTP server speaking the chat-completions API (started here)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
import pytest

from protocol import CmdRun, SessionSpec
from workers.security import LlmConfig, Security, SecurityConfig, SecurityConfigError

from .conftest import session_context


def completion(content: str) -> dict:
    return {"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


@pytest.fixture
async def model():  # type: ignore[no-untyped-def]
    """A chat-completions server whose next answer the test sets: ``model.answer = (status, body, delay_s)``."""

    class Model:
        answer: tuple[int, object, float] = (200, completion('{"risk": "low", "reason": "fine"}'), 0.0)
        requests: list[tuple[dict, dict]] = []

    state = Model()

    async def chat(request: web.Request) -> web.StreamResponse:
        state.requests.append((await request.json(), dict(request.headers)))
        status, body, delay = state.answer
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(body, status=status) if not isinstance(body, str) else web.Response(text=body, status=status)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined, union-attr]
    try:
        yield state
    finally:
        await runner.cleanup()


async def ask(model, command: str = "rm -rf ./build", **llm):  # type: ignore[no-untyped-def]
    security = Security(SecurityConfig(analyzers=["llm"], llm=LlmConfig(url=model.url, model="judge", **llm)))
    ctx = session_context(SessionSpec())
    gate = security.gate(ctx)
    try:
        [finding] = await gate.findings(CmdRun(id="a1", command=command), ctx)
    finally:
        await gate.aclose()
        await security.aclose()
    return finding


async def test_a_good_answer_is_the_finding_and_the_request_is_chat_completions(model, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    model.answer = (200, completion('Sure: {"risk": "high", "reason": "deletes the build"}'), 0.0)
    finding = await ask(model, api_key_env="JUDGE_KEY")
    assert (finding.risk, finding.reason, finding.analyzer) == ("high", "deletes the build", "llm")
    body, headers = model.requests[-1]
    assert body["model"] == "judge" and body["messages"][0]["role"] == "system"
    assert json.loads(body["messages"][1]["content"]) == {"kind": "cmd_run", "command": "rm -rf ./build"}
    assert headers["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(("answer", "says"), [
    ((200, completion("I think it is fine."), 0.0), "did not answer a JSON object"),
    ((200, completion('{"risk": "catastrophic"}'), 0.0), "not a risk and a reason"),
    ((200, {"choices": []}, 0.0), "no choices"),
    ((200, "<html>not json</html>", 0.0), "could not be asked"),
    ((500, {"error": "overloaded"}, 0.0), "HTTP 500"),
    ((200, completion('{"risk": "low"}'), 1.0), "did not answer within 0.3 s"),
])
async def test_a_bad_slow_or_failed_answer_is_unknown_with_the_reason(model, answer, says):
    model.answer = answer
    finding = await ask(model, timeout_s=0.3)
    assert finding.risk == "unknown" and says in finding.reason


async def test_an_endpoint_that_refuses_connections_is_unknown(model):
    model.url = "http://127.0.0.1:9"  # discard port: nothing listens
    finding = await ask(model)
    assert finding.risk == "unknown" and "could not be asked" in finding.reason


def test_the_analyzer_needs_an_endpoint_and_its_key() -> None:
    with pytest.raises(SecurityConfigError, match="llm.url"):
        Security(SecurityConfig(analyzers=["llm"]))
    with pytest.raises(SecurityConfigError, match="NO_SUCH_KEY_VAR"):
        Security(SecurityConfig(analyzers=["llm"], llm=LlmConfig(url="http://x", model="m", api_key_env="NO_SUCH_KEY_VAR")))
