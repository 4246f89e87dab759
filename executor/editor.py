"""The executor's str_replace editor, for code that edits files beside it: ``corral_skills.file_editor``
runs it in a kernel, with the executor's ``history_dir``, so both share one undo history."""

from ._editor import HISTORY_STEPS, Editor

__all__ = ["HISTORY_STEPS", "Editor"]
