"""Shared helpers for the batch tests: write tasks files, read results files."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "init.defaultBranch=main"]


def write_tasks(path: Path, tasks: list[dict | str]) -> Path:
    path.write_text("".join((t if isinstance(t, str) else json.dumps(t)) + "\n" for t in tasks))
    return path


def read_results(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(by_id) == len(lines), "one line per task"
    return by_id


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_repo(path: Path, files: dict[str, str]) -> str:
    """A git repository with one commit of ``files``; returns the commit id."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return git(path, "rev-parse", "HEAD").strip()


def diff_for(repo: Path, files: dict[str, str]) -> str:
    """The diff that turns the repository's HEAD into ``files``; the work tree is left clean."""
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached")
    git(repo, "reset", "-q", "--hard")
    return patch
