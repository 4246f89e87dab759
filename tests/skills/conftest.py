from __future__ import annotations

import pytest

from corral_skills import _file_editor, _window


@pytest.fixture(autouse=True)
def fresh_kernel_state(monkeypatch):
    """Each test starts as a new kernel would: no current file, no editor, no shared history."""
    monkeypatch.setattr(_window.state, "file", None)
    monkeypatch.setattr(_window.state, "line", 1)
    monkeypatch.delenv(_file_editor.HISTORY_DIR_ENV, raising=False)
    monkeypatch.setattr(_file_editor, "_editors", {})
