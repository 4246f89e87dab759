"""The one-line switch: OpenHands' own ``create_runtime`` building ``CorralRuntime`` from a
``config.toml`` that names it, the broker and spec coming from the environment."""

from __future__ import annotations

import json

from openhands.core.config import OpenHandsConfig
from openhands.core.config.utils import load_from_toml
from openhands.core.setup import create_runtime
from openhands.events.action import CmdRunAction, IPythonRunCellAction
from openhands.runtime import get_runtime_cls
from openhands.utils.async_utils import call_async_from_sync

from corral_integrations.openhands import CorralRuntime


def test_runtime_class_resolves_from_its_import_path():
    assert get_runtime_cls("corral_integrations.openhands.CorralRuntime") is CorralRuntime


def test_create_runtime_from_config_toml(local_corral, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('[core]\nruntime = "corral_integrations.openhands.CorralRuntime"\n'
                                          'file_store = "memory"\n')
    monkeypatch.setenv("CORRAL_NATS_URL", local_corral)
    monkeypatch.setenv("CORRAL_SESSION_SPEC", json.dumps({"env": {"FROM_SPEC_ENV": "1"}, "labels": {"who": "oh"}}))
    config = OpenHandsConfig()
    load_from_toml(config, str(tmp_path / "config.toml"))
    runtime = create_runtime(config)  # CodeActAgent's plugins: agent_skills and jupyter
    try:
        assert isinstance(runtime, CorralRuntime)
        call_async_from_sync(runtime.connect)
        obs = runtime.run_action(CmdRunAction(command="echo $FROM_SPEC_ENV"))
        assert obs.content == "1" and obs.exit_code == 0
        cell = runtime.run_action(IPythonRunCellAction(code="print(6 * 7)", include_extra=False))
        assert cell.content == "42"
        assert runtime.session_id.startswith("s")
    finally:
        runtime.close()
