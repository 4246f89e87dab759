"""SWE-Bench instances -> batch tasks.

Setup clones the repository from a local mirror ``<repos_dir>/<owner>__<name>`` (bare or not)
and checks out ``base_commit``; the patch is the instance's (or a model's) patch followed by its
``test_patch``; eval is the repository's test command with FAIL_TO_PASS + PASS_TO_PASS appended.

Each task mounts ``repos_dir`` read-only into its sandbox at the same path (the workers must be
started with ``--allow-mount`` for it), so the clone works on every backend.
"""

from __future__ import annotations

import os
import shlex
from typing import Iterable

import msgspec

from protocol import Mount

from ._tasks import Task


class SwebenchError(Exception):
    """An instance cannot be converted (no test command for its repository, a bad field)."""

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class SwebenchInstance(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of a SWE-Bench instance the adapter reads; every other field is ignored."""

    instance_id: str
    repo: str
    base_commit: str
    patch: str = ""
    test_patch: str = ""
    FAIL_TO_PASS: str | list[str] = []
    PASS_TO_PASS: str | list[str] = []


class _Prediction(msgspec.Struct, frozen=True):
    instance_id: str
    model_patch: str | None = None


def load_instances(path: str | os.PathLike[str]) -> list[SwebenchInstance]:
    """A JSONL file, or a JSON array (the form the datasets are often exported in)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip().startswith(b"["):
        return msgspec.json.decode(data, type=list[SwebenchInstance])
    return [msgspec.json.decode(line, type=SwebenchInstance) for line in data.splitlines() if line.strip()]


def load_predictions(path: str | os.PathLike[str]) -> dict[str, str]:
    """SWE-Bench predictions (``instance_id``, ``model_patch``) as JSONL or a JSON array."""
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip().startswith(b"["):
        preds = msgspec.json.decode(data, type=list[_Prediction])
    else:
        preds = [msgspec.json.decode(line, type=_Prediction) for line in data.splitlines() if line.strip()]
    return {p.instance_id: p.model_patch or "" for p in preds}


def mirror_path(repos_dir: str, repo: str) -> str:
    owner, _, name = repo.partition("/")
    return os.path.join(os.path.abspath(repos_dir), f"{owner}__{name}")


def _test_names(value: str | list[str], field: str, instance_id: str) -> list[str]:
    if isinstance(value, list):
        return value
    if not value.strip():
        return []
    try:
        return msgspec.json.decode(value, type=list[str])
    except msgspec.DecodeError as exc:
        raise SwebenchError(f"{instance_id}: {field} is not a JSON list of test names: {exc}",
                            instance_id=instance_id) from None


def _join_patches(*patches: str) -> str | None:
    parts = [p if p.endswith("\n") else p + "\n" for p in patches if p.strip()]
    return "".join(parts) or None


def convert_instances(
    instances: Iterable[SwebenchInstance],
    *,
    repos_dir: str,
    test_cmds: dict[str, str],
    setup_cmds: dict[str, list[str]] | None = None,
    predictions: dict[str, str] | None = None,
    workdir: str = "repo",
    image: str | None = None,
    timeout_s: float = 1800.0,
) -> list[Task]:
    """One task per instance. With ``predictions``, only predicted instances, with the model's patch.

    Raises ``SwebenchError`` naming every repository that has no test command.
    """
    chosen = [i for i in instances if predictions is None or i.instance_id in predictions]
    missing = sorted({i.repo for i in chosen} - set(test_cmds))
    if missing:
        raise SwebenchError(f"no test command for {', '.join(missing)} (give --test-cmd REPO=CMD)")
    tasks = []
    for inst in chosen:
        tests = (_test_names(inst.FAIL_TO_PASS, "FAIL_TO_PASS", inst.instance_id)
                 + _test_names(inst.PASS_TO_PASS, "PASS_TO_PASS", inst.instance_id))
        wd = shlex.quote(workdir)
        setup = [
            f"git clone -q {shlex.quote(mirror_path(repos_dir, inst.repo))} {wd}",
            f"cd {wd} && git -c advice.detachedHead=false checkout -q {shlex.quote(inst.base_commit)}",
            *(setup_cmds or {}).get(inst.repo, []),
        ]
        patch = predictions[inst.instance_id] if predictions is not None else inst.patch
        command = " ".join([test_cmds[inst.repo], *(shlex.quote(t) for t in tests)])
        mirror_root = os.path.abspath(repos_dir)
        tasks.append(Task(id=inst.instance_id, image=image, setup=setup, patch=_join_patches(patch, inst.test_patch),
                          eval=[command], timeout_s=timeout_s, workdir=workdir,
                          mounts=[Mount(source=mirror_root, target=mirror_root)]))
    return tasks
