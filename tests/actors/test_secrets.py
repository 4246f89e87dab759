"""The masking of secrets: strings, structs, streams split anywhere, and the log processor."""

from __future__ import annotations

import itertools
import random

import pytest

from actors.secrets import LiveSecrets, Masker, mask_log_secrets, live_secrets, without_secrets
from protocol import CmdOutput, Error, FileContent, McpResult, McpText, SessionInfo, PluginStatus, SessionSpec

TOKEN = "Xq7hT2pLm9Zr4Wk8Bn3Vc6Ys"


def test_every_value_is_replaced_by_its_name():
    masker = Masker.of({"API_TOKEN": TOKEN, "DB_PASSWORD": "hunter22"})
    assert masker.mask_str(f"a {TOKEN} b hunter22 c {TOKEN}") == "a [secret:API_TOKEN] b [secret:DB_PASSWORD] c [secret:API_TOKEN]"


def test_text_without_a_value_is_the_same_object():
    masker = Masker.of({"API_TOKEN": TOKEN})
    text = "nothing to see " * 100
    assert masker.mask_str(text) is text
    obs = CmdOutput(id="1", content=text)
    assert masker.mask(obs) is obs


def test_no_secrets_means_no_masker():
    assert Masker.of({}) is None
    assert Masker.of({"EMPTY": ""}) is None


def test_the_longest_of_overlapping_values_wins():
    masker = Masker.of({"SHORT": "abcd", "LONG": "abcdefgh"})
    assert masker.mask_str("abcdefgh abcd") == "[secret:LONG] [secret:SHORT]"


def test_a_multiline_value_is_matched_as_a_terminal_prints_it():
    masker = Masker.of({"KEY": "-----BEGIN-----\nAAAA\n-----END-----"})
    assert masker.mask_str("-----BEGIN-----\r\nAAAA\r\n-----END-----\r\n") == "[secret:KEY]\r\n"
    assert masker.mask_str("-----BEGIN-----\nAAAA\n-----END-----") == "[secret:KEY]"


def test_struct_strings_are_masked_recursively_but_ids_and_literals_are_not():
    masker = Masker.of({"T": "completed-token"})
    obs = CmdOutput(id="completed-token", cause="completed-token", content="x completed-token", hint="completed-token",
                    status="completed")
    masked = masker.mask(obs)
    assert (masked.id, masked.cause, masked.status) == ("completed-token", "completed-token", "completed")
    assert (masked.content, masked.hint) == ("x [secret:T]", "[secret:T]")
    mcp = McpResult(id="1", server="s", tool="t", content=[McpText(text=f"is {TOKEN}")],
                    structured_content={TOKEN: [f"{TOKEN}!", 1], "n": None})
    masked = Masker.of({"T": TOKEN}).mask(mcp)
    assert masked.content == [McpText(text="is [secret:T]")]
    assert masked.structured_content == {"[secret:T]": ["[secret:T]!", 1], "n": None}


def test_nested_replies_are_masked():
    info = SessionInfo(session_id="s1", worker_id="w", backend="local", status="ready",
                       plugins=[PluginStatus(name="jupyter", state="failed", reason=f"kernel said {TOKEN}")])
    assert Masker.of({"T": TOKEN}).mask(info).plugins[0].reason == "kernel said [secret:T]"


def _streamed(masker: Masker, parts: list[str]) -> str:
    stream = masker.stream()
    return "".join(stream.feed(p) for p in parts) + stream.flush()


@pytest.mark.parametrize("secrets", [
    {"T": TOKEN},
    {"T": TOKEN, "U": "hunter22"},
    {"T": "KxyzK"},  # ends with its own beginning
    {"SHORT": "abcd", "LONG": "abcdefgh"},  # one value starts another
])
def test_a_stream_split_anywhere_is_masked_as_the_whole_text_would_be(secrets):
    masker = Masker.of(secrets)
    values = list(secrets.values())
    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choice([*values, "x", "\n", "ab", "K", "hunter", TOKEN[:5]]) for _ in range(12))
        for cuts in itertools.combinations(range(1, len(text)), 2):
            if rng.random() > 0.05:
                continue
            parts = [text[:cuts[0]], text[cuts[0]:cuts[1]], text[cuts[1]:]]
            assert _streamed(masker, parts) == masker.mask_str(text), parts


def test_a_stream_holds_back_only_what_may_start_a_value():
    stream = Masker.of({"T": TOKEN}).stream()
    assert stream.feed("ordinary output\n") == "ordinary output\n"
    assert stream.feed(f"token: {TOKEN[:10]}") == "token: "
    assert stream.held == TOKEN[:10]
    assert stream.feed(TOKEN[10:] + " done\n") == "[secret:T] done\n"
    assert stream.feed("ends with X") == "ends with "  # X could begin the token...
    assert stream.flush() == "X"  # ...and is given back at the end


def test_the_registry_keeps_no_secrets():
    spec = SessionSpec(env={"A": "1"}, secrets={"API_TOKEN": TOKEN})
    assert without_secrets(spec) == SessionSpec(env={"A": "1"})
    assert without_secrets(SessionSpec()) == SessionSpec()


def test_live_secrets_mask_while_held_and_two_sessions_may_share_a_name():
    live = LiveSecrets()
    live.add("s1", {"API_TOKEN": TOKEN})
    live.add("s2", {"API_TOKEN": "other-value"})
    assert live.masker.mask_str(f"{TOKEN} other-value") == "[secret:API_TOKEN] [secret:API_TOKEN]"
    live.discard("s1")
    assert live.masker.mask_str(TOKEN) == TOKEN
    live.discard("s2")
    assert live.masker is None and len(live) == 0
    with live.holding({"X": "held-value"}):
        assert live.masker.mask_str("held-value") == "[secret:X]"
    assert live.masker is None


def test_the_log_processor_masks_values_of_any_type_and_costs_nothing_without_secrets():
    event = {"event": "e", "detail": TOKEN}
    assert mask_log_secrets(None, "info", event) is event
    with live_secrets.holding({"T": TOKEN}):
        masked = mask_log_secrets(None, "info", {
            "event": f"about {TOKEN}", "detail": [TOKEN, {"k": TOKEN}], "error": ValueError(TOKEN), "n": 3,
            "obs": Error(id="1", code="internal", message=TOKEN), "plain": object,
        })
    assert masked["event"] == "about [secret:T]" and masked["detail"] == ["[secret:T]", {"k": "[secret:T]"}]
    assert masked["error"] == "ValueError('[secret:T]')" and masked["n"] == 3
    assert masked["obs"].message == "[secret:T]" and masked["plain"] is object


def test_file_content_is_masked():
    masked = Masker.of({"T": TOKEN}).mask(FileContent(id="1", path="/w/t.txt", content=TOKEN))
    assert masked.content == "[secret:T]" and masked.path == "/w/t.txt"
