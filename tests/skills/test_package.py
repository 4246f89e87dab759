"""The package as a kernel and a prompt see it: the star import, the documentation, `corral skills doc`."""

from __future__ import annotations

import inspect

from click.testing import CliRunner
import pytest
import structlog

from cli.main import cli
import corral_skills

SKILLS = [
    "open_file", "goto_line", "scroll_down", "scroll_up", "create_file", "search_dir", "search_file", "find_file",
    "edit_file_by_replace", "insert_content_at_line", "append_file", "file_editor",
    "parse_pdf", "parse_docx", "parse_pptx", "parse_latex",
]


def test_the_star_import_gives_exactly_the_skills():
    namespace: dict = {}
    exec("from corral_skills import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(SKILLS)
    assert corral_skills.__all__ == SKILLS


def test_the_skills_keep_openhands_signatures():
    signatures = {name: str(inspect.signature(getattr(corral_skills, name), eval_str=True)) for name in SKILLS}
    assert signatures["open_file"] == "(path: str, line_number: int | None = 1, context_lines: int | None = 100) -> None"
    assert signatures["search_dir"] == "(search_term: str, dir_path: str = './') -> None"
    assert signatures["search_file"] == "(search_term: str, file_path: str | None = None) -> None"
    assert signatures["edit_file_by_replace"] == "(file_name: str, to_replace: str, new_content: str) -> None"
    assert signatures["insert_content_at_line"] == "(file_name: str, line_number: int, content: str) -> None"


def test_documentation_has_every_skill_with_its_signature_and_indented_docstring():
    doc = corral_skills.documentation()
    blocks = doc.split("\n\n")[:-1]
    assert [block.split("(", 1)[0] for block in blocks] == SKILLS
    assert blocks[0].startswith(
        "open_file(path: str, line_number: int | None = 1, context_lines: int | None = 100) -> None:\n"
        "    Opens the file at the given path"
    )
    for block in blocks:
        assert all(line.startswith("    ") and line.strip() for line in block.splitlines()[1:]), block
    assert doc.endswith("\n\n")


@pytest.fixture
def logging_config_kept():
    """The ``corral`` group configures structlog for the process; later tests capture info logs."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_corral_skills_doc_prints_the_documentation(logging_config_kept):
    result = CliRunner().invoke(cli, ["skills", "doc"])
    assert result.exit_code == 0, result.output
    assert result.output == corral_skills.documentation()


def test_the_star_import_loads_no_document_library_and_not_the_editor():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    probe = (
        "import sys\nfrom corral_skills import *\n"
        "print(sorted(m for m in ('pypdf', 'docx', 'pptx', 'pylatexenc', 'msgspec', 'protocol', 'executor') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.stdout.strip() == "[]", done.stderr
