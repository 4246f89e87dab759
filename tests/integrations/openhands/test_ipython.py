"""IPythonRunCellAction through corral's jupyter plugin, as OpenHands' tests/runtime/test_ipython.py
checks it: output with the working-directory and interpreter lines, errors, the kernel following
the shell's cwd, os.chdir, env vars reaching the kernel."""

from __future__ import annotations

from openhands.events.action import CmdRunAction, IPythonRunCellAction
from openhands.events.observation import IPythonRunCellObservation
import pytest

from .conftest import load_runtime


@pytest.fixture(scope="module")
def jupyter_runtime(local_corral):
    rt = load_runtime(local_corral, jupyter=True)
    yield rt
    rt.close()


def test_cell_output_with_cwd_and_interpreter(jupyter_runtime):
    obs = jupyter_runtime.run_action(IPythonRunCellAction(code="print('Hello, `World`!\\n')"))
    assert isinstance(obs, IPythonRunCellObservation)
    lines = obs.content.strip().split("\n")
    assert lines[0] == "Hello, `World`!"
    assert lines[-2] == f"[Jupyter current working directory: {jupyter_runtime.workspace_root}]"
    assert lines[-1].startswith("[Jupyter Python interpreter: /") and "python" in lines[-1]


def test_error_shows_the_exception(jupyter_runtime):
    obs = jupyter_runtime.run_action(IPythonRunCellAction(code="import not_a_module_anywhere"))
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in obs.content


def test_kernel_follows_the_shell_cwd(jupyter_runtime):
    jupyter_runtime.run_action(CmdRunAction(command="mkdir -p kdir && cd kdir"))
    obs = jupyter_runtime.run_action(IPythonRunCellAction(code="import os; print(os.getcwd())", include_extra=False))
    assert obs.content.strip() == f"{jupyter_runtime.workspace_root}/kdir"
    jupyter_runtime.run_action(CmdRunAction(command="cd .."))


def test_chdir_in_a_cell(jupyter_runtime):
    obs = jupyter_runtime.run_action(IPythonRunCellAction(
        code="import os\nos.makedirs('test_dir', exist_ok=True)\nprint(os.path.abspath('test_dir'))", include_extra=False))
    path = obs.content.split("\n")[0].strip()
    obs = jupyter_runtime.run_action(IPythonRunCellAction(code=f"os.chdir(r'{path}')\nprint(os.getcwd())",
                                                          include_extra=False))
    assert obs.content.split("\n")[0].strip() == path


def test_env_vars_reach_the_kernel(jupyter_runtime):
    jupyter_runtime.add_env_vars({"KERNEL_VAR": "seen"})
    obs = jupyter_runtime.run_action(IPythonRunCellAction(code="import os; print(os.environ['KERNEL_VAR'])",
                                                          include_extra=False))
    assert obs.content.strip() == "seen"


def test_state_persists_between_cells(jupyter_runtime):
    jupyter_runtime.run_action(IPythonRunCellAction(code="x = 41", include_extra=False))
    assert jupyter_runtime.run_action(IPythonRunCellAction(code="print(x + 1)", include_extra=False)).content == "42"


def test_ipython_without_the_plugin_is_reported(runtime):
    obs = runtime.run_action(IPythonRunCellAction(code="print(1)"))
    assert "IPython is not available" in obs.content
