"""Environment variables, as OpenHands' tests/runtime/test_env_vars.py checks them."""

from __future__ import annotations

from openhands.events.action import CmdRunAction

from .conftest import load_runtime


def echo(runtime, what: str) -> str:
    obs = runtime.run_action(CmdRunAction(command=f"echo {what}"))
    assert obs.exit_code == 0
    return obs.content.strip()


def test_add_env_vars_exports_in_the_shell(runtime):
    runtime.add_env_vars({"QUUX": 'abc"def'})
    assert echo(runtime, "$QUUX") == 'abc"def'
    runtime.add_env_vars({"foobar": "xyz"})  # names are upper-cased, as OpenHands does
    assert echo(runtime, "$QUUX $FOOBAR") == 'abc"def xyz'
    runtime.add_env_vars({"QUUX": "new_value"})
    assert echo(runtime, "$QUUX") == "new_value"


def test_add_no_env_vars_changes_nothing(runtime):
    before = runtime.run_action(CmdRunAction(command="env | sort")).content
    runtime.add_env_vars({})
    assert runtime.run_action(CmdRunAction(command="env | sort")).content == before


def test_startup_env_vars_from_the_config(local_corral):
    runtime = load_runtime(local_corral, startup_env={"ADDED_ENV_VAR": "added_value"})
    try:
        assert echo(runtime, "$ADDED_ENV_VAR") == "added_value"
    finally:
        runtime.close()


def test_spec_env_from_keyword_arguments(local_corral):
    runtime = load_runtime(local_corral, env={"FROM_SPEC": "yes"})
    try:
        assert echo(runtime, "$FROM_SPEC") == "yes"
    finally:
        runtime.close()
