"""corral_skills: the helpers a coding agent calls from an IPython cell (plugin ``agent_skills``).

Every kernel of a session that asks for ``agent_skills`` runs ``from corral_skills import *``, so
``__all__`` is exactly the skills. They are compatible with OpenHands' agent skills (same names,
signatures and printed texts), so prompts written for those work unchanged:

- viewing: ``open_file``, ``goto_line``, ``scroll_down``, ``scroll_up`` (one current file and window
  per kernel), ``create_file``;
- searching: ``search_dir``, ``search_file``, ``find_file``;
- editing: ``edit_file_by_replace``, ``insert_content_at_line``, ``append_file`` (the edited window
  is shown after each; no linting), and ``file_editor``, the executor's own str_replace editor,
  sharing its undo history with the session's ``file_edit`` actions;
- reading documents: ``parse_pdf``, ``parse_docx``, ``parse_pptx``, ``parse_latex``.

Skills print their answers and never raise: a failure is a line ``ERROR: ...``.
``documentation()`` renders every skill's signature and docstring for an agent's prompt
(``corral skills doc`` prints it). Runs in the sandbox as its user: imports only the standard
library, ``protocol`` and ``executor.editor``, and the document libraries inside the readers.
"""

from __future__ import annotations

from ._edits import append_file, edit_file_by_replace, insert_content_at_line
from ._file_editor import file_editor
from ._readers import parse_docx, parse_latex, parse_pdf, parse_pptx
from ._search import find_file, search_dir, search_file
from ._window import create_file, goto_line, open_file, scroll_down, scroll_up

__all__ = [
    "open_file",
    "goto_line",
    "scroll_down",
    "scroll_up",
    "create_file",
    "search_dir",
    "search_file",
    "find_file",
    "edit_file_by_replace",
    "insert_content_at_line",
    "append_file",
    "file_editor",
    "parse_pdf",
    "parse_docx",
    "parse_pptx",
    "parse_latex",
]


def documentation() -> str:
    """Every skill as ``name(signature):`` followed by its docstring, blank lines dropped and each
    line indented four spaces: the shape of OpenHands' agent skills documentation."""
    import inspect

    parts = []
    for name in __all__:
        skill = globals()[name]
        lines = [line.strip() for line in (skill.__doc__ or "").splitlines()]
        body = "\n".join(f"    {line}" for line in lines if line)
        parts.append(f"{name}{inspect.signature(skill, eval_str=True)}:\n{body}\n\n")
    return "".join(parts)
