#!/usr/bin/env python3
"""Make a tiny SWE-Bench-like batch: git repositories with a bug and a failing test, patches, tasks.jsonl.

    python3 examples/batch/make_example.py [DIR]        # DIR defaults to /tmp/corral-example

Each repository is committed with its bug; the patch is what `git diff` says after the fix is
written (then the fix is undone). Tasks clone the repository into the sandbox (the local backend
sees host paths) and run its tests. Expected: 4 passed (gold patches), 1 failed (a wrong patch),
1 failed (no patch: the bug is still there).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

GIT = ["git", "-c", "user.name=corral example", "-c", "user.email=example@corral.invalid", "-c", "init.defaultBranch=main"]

UNITTEST = "python3 -m unittest -q"

REPOS = {
    "calc": {
        "files": {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": ("import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n"
                             "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"),
        },
        "fix": {"calc.py": "def add(a, b):\n    return a + b\n"},
        "wrong": {"calc.py": "def add(a, b):\n    return a * b\n"},
        "test": UNITTEST,
    },
    "words": {
        "files": {
            "words.py": "def reverse_words(text):\n    return ' '.join(text.split()[::1])\n",
            "test_words.py": ("import unittest\nfrom words import reverse_words\n\n\nclass T(unittest.TestCase):\n"
                              "    def test_reverse(self):\n        self.assertEqual(reverse_words('a b c'), 'c b a')\n"),
        },
        "fix": {"words.py": "def reverse_words(text):\n    return ' '.join(text.split()[::-1])\n"},
        "test": UNITTEST,
    },
    "stack": {
        "files": {
            "stack.py": ("class Stack:\n    def __init__(self):\n        self.items = []\n\n"
                         "    def push(self, x):\n        self.items.append(x)\n\n"
                         "    def pop(self):\n        return self.items.pop(0)\n"),
            "test_stack.py": ("import unittest\nfrom stack import Stack\n\n\nclass T(unittest.TestCase):\n"
                              "    def test_lifo(self):\n        s = Stack()\n        s.push(1)\n        s.push(2)\n"
                              "        self.assertEqual(s.pop(), 2)\n"),
        },
        "fix": {"stack.py": ("class Stack:\n    def __init__(self):\n        self.items = []\n\n"
                             "    def push(self, x):\n        self.items.append(x)\n\n"
                             "    def pop(self):\n        return self.items.pop()\n")},
        "test": UNITTEST,
    },
    "greet": {
        "files": {
            "greet.sh": "#!/bin/bash\necho \"Helo, $1!\"\n",
            "test.sh": ("#!/bin/bash\nout=$(bash greet.sh world)\n"
                        "[ \"$out\" = 'Hello, world!' ] || { echo \"FAIL: got '$out'\"; exit 1; }\necho OK\n"),
        },
        "fix": {"greet.sh": "#!/bin/bash\necho \"Hello, $1!\"\n"},
        "test": "bash test.sh",
    },
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)


def make_repo(root: Path, name: str, spec: dict) -> dict[str, str]:
    """Commit the buggy repository; return its patches by kind ("fix", "wrong")."""
    repo = root / "repos" / name
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, spec["files"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{name}: initial (with a bug)")
    patches = {}
    for kind in ("fix", "wrong"):
        if kind in spec:
            write(repo, spec[kind])
            patches[kind] = git(repo, "diff")
            git(repo, "checkout", "-q", "--", ".")
    return patches


def task(root: Path, task_id: str, repo: str, patch: str | None) -> dict:
    return {
        "id": task_id,
        "image": None,
        "setup": [f"git clone -q {root / 'repos' / repo} repo"],
        "files": {},
        "patch": patch,
        "eval": [REPOS[repo]["test"]],
        "timeout_s": 60,
        "expect_exit_code": 0,
        "workdir": "repo",
    }


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/corral-example").absolute()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    patches = {name: make_repo(root, name, spec) for name, spec in REPOS.items()}
    tasks = [task(root, f"{name}-gold", name, patches[name]["fix"]) for name in REPOS]
    tasks.append(task(root, "calc-wrong-patch", "calc", patches["calc"]["wrong"]))
    tasks.append(task(root, "words-no-patch", "words", None))
    with open(root / "tasks.jsonl", "w") as f:
        for t in tasks:
            f.write(json.dumps(t) + "\n")
    print(f"wrote {len(tasks)} tasks to {root / 'tasks.jsonl'} (4 should pass, 2 should fail)")


if __name__ == "__main__":
    main()
