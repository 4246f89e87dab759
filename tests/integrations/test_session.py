"""The adapters' shared ground: spec from keyword arguments, the broker default, a blocking session."""

from __future__ import annotations

import pytest

from corral_integrations._session import BlockingSession, resolve_nats_url, session_spec
from protocol import CmdOutput, CmdRun, new_id


def test_nats_url_from_argument_env_then_default(monkeypatch):
    monkeypatch.delenv("CORRAL_NATS_URL", raising=False)
    assert resolve_nats_url() == "nats://127.0.0.1:4222"
    monkeypatch.setenv("CORRAL_NATS_URL", "nats://broker:4222")
    assert resolve_nats_url() == "nats://broker:4222"
    assert resolve_nats_url("nats://given:1") == "nats://given:1"


def test_spec_fields_are_checked():
    spec = session_spec(backend="docker", env={"A": "1"}, resources={"cpus": 1.5}, image=None)
    assert spec.backend == "docker" and spec.env == {"A": "1"} and spec.resources.cpus == 1.5
    with pytest.raises(ValueError, match="imgae"):
        session_spec(imgae="x")
    with pytest.raises(ValueError, match="env"):
        session_spec(env="A=1")


def test_blocking_session_runs_actions_and_closes(local_corral):
    with BlockingSession(local_corral, env={"GREETING": "hello"}) as sandbox:
        out = sandbox.run(CmdRun(id=new_id(), command="echo $GREETING"))
        assert isinstance(out, CmdOutput) and out.content.strip() == "hello" and out.exit_code == 0
        session_id = sandbox.session_id
    with BlockingSession(local_corral) as other:
        assert other.session_id != session_id
        missing = other.run(CmdRun(id=new_id(), command="cat /nonexistent-file"))
        assert isinstance(missing, CmdOutput) and missing.exit_code != 0
    sandbox.close()  # twice is fine


def test_unreachable_broker_is_a_clear_error():
    with pytest.raises(Exception) as excinfo:
        BlockingSession("nats://127.0.0.1:1")
    assert "127.0.0.1:1" in str(excinfo.value) or "connect" in str(excinfo.value).lower()
