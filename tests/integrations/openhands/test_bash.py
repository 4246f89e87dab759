"""CmdRunAction through CorralRuntime, checked the way OpenHands' tests/runtime/test_bash.py checks
its own runtimes: exit codes, the completion suffix, cwd persistence, multi-line commands, quiet
commands (no new output), hard timeouts that leave a command running, input and C-c."""

from __future__ import annotations

from openhands.events.action import CmdRunAction
from openhands.events.observation import CmdOutputObservation, ErrorObservation

NO_NEW_OUTPUT = "[The command has no new output after 1 seconds."
STILL_RUNNING = "The previous command is still running"


def run(runtime, command: str, *, is_input: bool = False, timeout_s: float | None = None):
    action = CmdRunAction(command=command, is_input=is_input)
    if timeout_s is not None:
        action.set_hard_timeout(timeout_s)
    return runtime.run_action(action)


def test_exit_code_and_completion_suffix(runtime):
    obs = run(runtime, "echo 'hello world'")
    assert isinstance(obs, CmdOutputObservation)
    assert obs.content == "hello world"
    assert obs.exit_code == 0
    assert "[The command completed with exit code 0.]" in obs.metadata.suffix


def test_failed_command_reports_127(runtime):
    obs = run(runtime, "nonexistent_command")
    assert obs.exit_code == 127
    assert "nonexistent_command: command not found" in obs.content
    assert "[The command completed with exit code 127.]" in obs.metadata.suffix


def test_cwd_persists_between_commands(runtime):
    assert run(runtime, "mkdir -p test && cd test").exit_code == 0
    obs = run(runtime, "pwd")
    assert obs.content.strip() == f"{runtime.workspace_root}/test"
    assert obs.metadata.working_dir == f"{runtime.workspace_root}/test"


def test_multiline_commands_and_whitespace(runtime):
    assert "foo" in run(runtime, 'echo \\\n -e "foo"').content
    assert "hello\nworld" in run(runtime, 'echo -e "hello\nworld"').content
    assert "\n\n\n" in run(runtime, 'echo -e "a\\n\\n\\nz"').content
    heredoc = run(runtime, "cat << EOF\nline 1\nline 2\nEOF")
    assert "line 1\nline 2" in heredoc.content and heredoc.exit_code == 0


def test_multiple_commands_at_once_are_refused(runtime):
    obs = run(runtime, 'ls -l\necho -e "hello\nworld"')
    assert isinstance(obs, ErrorObservation)
    assert "Cannot execute multiple commands at once" in obs.content
    assert run(runtime, "echo a && echo b; echo c").content.split() == ["a", "b", "c"]


def test_command_backslash_escaping(runtime):
    run(runtime, 'mkdir -p /tmp/oh_bs && echo "implemented_function" > /tmp/oh_bs/file_1.txt')
    obs = run(runtime, 'find /tmp/oh_bs -type f -exec grep -l "implemented_function" {} \\;')
    assert obs.exit_code == 0 and "/tmp/oh_bs/file_1.txt" in obs.content


def test_long_output(runtime):
    obs = run(runtime, 'for i in $(seq 1 5000); do echo "Line $i"; done', timeout_s=10)
    assert obs.exit_code == 0
    assert "Line 1\n" in obs.content and "Line 5000" in obs.content


def test_empty_command_without_running_one(runtime):
    obs = run(runtime, "")
    assert isinstance(obs, CmdOutputObservation)
    assert "ERROR: No previous running command to retrieve logs from." in obs.content


def test_quiet_command_then_input(quick_runtime):
    obs = run(quick_runtime, 'read -p "Enter name: " name && echo "Hello $name"')
    assert "Enter name:" in obs.content
    assert obs.exit_code == -1
    assert NO_NEW_OUTPUT in obs.metadata.suffix
    obs = run(quick_runtime, "John", is_input=True)
    assert "Hello John" in obs.content
    assert "[The command completed with exit code 0.]" in obs.metadata.suffix


def test_python_input_without_is_input_is_not_executed(quick_runtime):
    script = "name = input('Enter your name: '); age = input('Enter your age: '); print(f'Hello {name}, you are {age} years old')"
    assert run(quick_runtime, f'python3 -c "{script}"').exit_code == -1
    obs = run(quick_runtime, "Alice")
    assert 'Your command "Alice" is NOT executed. The previous command is still running' in obs.metadata.suffix
    assert obs.exit_code == -1
    obs = run(quick_runtime, "Alice", is_input=True)
    assert "Enter your age:" in obs.content and obs.exit_code == -1
    obs = run(quick_runtime, "25", is_input=True)
    assert "Hello Alice, you are 25 years old" in obs.content
    assert obs.exit_code == 0


def test_timed_out_command_keeps_running_and_continues(runtime):
    obs = run(runtime, "for i in {1..3}; do echo $i; sleep 3; done", timeout_s=2.5)
    assert obs.content.strip() == "1"
    assert obs.exit_code == -1
    assert obs.metadata.prefix == ""
    assert "[The command timed out after 2.5 seconds." in obs.metadata.suffix
    obs = run(runtime, "", timeout_s=2.5)
    assert obs.content.strip() == "2"
    assert obs.metadata.prefix == "[Below is the output of the previous command.]\n"
    obs = run(runtime, "sleep 15", timeout_s=2.5)
    assert STILL_RUNNING in obs.metadata.suffix and obs.exit_code == -1
    obs = run(runtime, "")
    assert "3" in obs.content
    assert "[The command completed with exit code 0.]" in obs.metadata.suffix


def test_interrupt_a_server_with_ctrl_c(runtime):
    obs = run(runtime, "python3 -u -m http.server 0", timeout_s=1)
    assert obs.exit_code == -1
    assert "Serving HTTP on" in obs.content
    obs = run(runtime, "C-c", is_input=True, timeout_s=30)
    assert "Keyboard interrupt received, exiting." in obs.content
    assert "CTRL+C was sent." in obs.metadata.suffix
    obs = run(runtime, "ls")
    assert obs.exit_code == 0
    assert "Keyboard interrupt received" not in obs.content


def test_ctrl_c_stops_a_silent_command_with_130(quick_runtime):
    assert run(quick_runtime, "sleep 100").exit_code == -1
    obs = run(quick_runtime, "C-c", is_input=True)
    assert obs.exit_code == 130
    assert run(quick_runtime, "echo ok").content == "ok"


def test_background_server_and_curl(runtime):
    assert run(runtime, "python3 -m http.server 18765 > /dev/null 2>&1 &").exit_code == 0
    obs = run(runtime, "for i in $(seq 50); do curl -s http://127.0.0.1:18765 && break; sleep 0.1; done")
    assert "Directory listing for" in obs.content
    assert run(runtime, 'kill %1').exit_code == 0


def test_static_command_runs_beside_a_running_one(quick_runtime, tmp_path):
    assert run(quick_runtime, "sleep 100").exit_code == -1
    action = CmdRunAction(command="pwd", is_static=True, cwd=str(tmp_path))
    obs = quick_runtime.run_action(action)
    assert obs.content.strip() == str(tmp_path) and obs.exit_code == 0
    assert run(quick_runtime, "C-c", is_input=True).exit_code == 130


def test_command_that_never_goes_quiet_is_stopped_at_twice_its_timeout(runtime):
    obs = run(runtime, "while true; do echo tick; sleep 0.2; done", timeout_s=1)
    assert "tick" in obs.content
    assert "and was stopped" in obs.metadata.suffix
    assert obs.exit_code == 130
    assert run(runtime, "echo after").content == "after"
