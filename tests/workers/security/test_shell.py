"""Reading commands as the shell would: simple commands through every nesting, writes, normal form; never a crash."""

from __future__ import annotations

import random
import shlex

import pytest

from workers.security import read_shell
from workers.security._shell import unquote


def programs(text: str) -> list[str]:
    return [c.program for c in read_shell(text).commands]


def test_every_simple_command_of_pipelines_lists_and_substitutions_is_found() -> None:
    found = programs("a | b && c || d; e & f $(g | h) `i` <(j) >(k)")
    assert set(found) == set("abcdefghijk")


def test_wrappers_are_recorded_and_unwrapped() -> None:
    found = programs("sudo -u root env A=1 nohup nice -n 5 timeout -s KILL 5 xargs -n1 command rm x")
    assert found == ["sudo", "env", "nohup", "nice", "timeout", "xargs", "command", "rm"]
    assert read_shell("command -v rm").commands[-1].program == "command"


def test_shell_strings_eval_and_here_documents_are_read() -> None:
    assert "rm" in programs("bash -c 'rm x'") and "rm" in programs("sh -ec 'rm x'")
    assert "rm" in programs("su -c 'rm x' root") and "rm" in programs("eval rm x")
    assert "rm" in programs("bash <<'EOF'\nrm x\nEOF") and "rm" in programs("bash <<< 'rm x'")
    assert "rm" not in programs("cat <<EOF\nrm x\nEOF")  # a here-document for cat is data


@pytest.mark.parametrize(("raw", "word"), [("'r''m'", "rm"), ('"r"m', "rm"), ("\\rm", "rm"), ("r\\m", "rm"),
                                           ("$'\\x72m'", "rm"), ('"a b"', "a b"), ("'$(x)'", "$(x)")])
def test_words_are_unquoted(raw: str, word: str) -> None:
    assert unquote(raw) == word


def test_writes_come_from_redirections_and_from_programs_that_write() -> None:
    facts = read_shell("a > o1; b >> o2 2>/dev/null; c &> o3; tee -a o4 o5 < in; cp s d1; mv -t d2 s; dd of=o6; sed -i e f1")
    assert set(facts.writes) >= {"o1", "o2", "o3", "o4", "o5", "d1", "d2", "o6", "f1"}
    assert "in" not in facts.writes and "s" not in facts.writes


def test_the_normal_form_unwraps_and_renders_pipelines() -> None:
    assert "curl x | bash" in read_shell("curl x | sudo -E bash").lines
    assert "curl x | sh" in read_shell('sh -c "$(curl x)"').lines


def test_a_variable_assigned_earlier_is_the_program() -> None:
    assert programs("X=rm; $X -rf y")[-1] == "rm"
    assert programs("P='rm -rf'; $P y")[-1] == "rm"


def test_what_bashlex_cannot_parse_is_tokenized_and_says_so() -> None:
    facts = read_shell("[[ -f x ]] && rm y; echo $((1 + 2))")
    assert not facts.parsed and "bashlex" in facts.note
    assert "rm" in [c.program for c in facts.commands]


def test_commands_nested_past_the_depth_limit_are_not_followed_forever() -> None:
    text = "rm y"
    for _ in range(12):
        text = f"bash -c {shlex.quote(text)}"
    facts = read_shell(text)
    assert not facts.parsed and "nested" in facts.note
    assert "rm" not in [c.program for c in facts.commands]  # past the limit: not read (and medium, see the rules)


def test_random_bytes_never_crash_the_reader() -> None:
    rng = random.Random(12)
    alphabet = "ab $`'\"\\(){}[]<>|&;#!*?~=\n\t-/"
    for _ in range(2000):
        read_shell("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))


def test_a_huge_command_is_read_linearly() -> None:
    facts = read_shell("cat > f <<EOF\n" + "x" * 100_000 + "\nEOF\nrm y")
    assert not facts.parsed and "rm" in [c.program for c in facts.commands]


@pytest.mark.parametrize("text", ["'${'b", "echo \"$(echo '${'b)\"", ">& ~`?*{[]$&$&*?{[/!?a-=${/`\n$|#\"?|[}>)*/(~`\"&$-",
                                  "##\"b$('\\} \"a\\\"\n{)\"'=a# ${$'\n{#)\n{)\nb'}\\a)\"ba$a'\n$\n=a`\\"])
def test_inputs_that_send_bashlex_into_an_endless_loop_are_read_at_once(text: str) -> None:
    read_shell(text)  # bashlex loops forever on these as given (found by fuzzing); the timeout would fail this
