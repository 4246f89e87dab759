"""Progress reporting: a callback receives stages and log lines as they happen."""

from __future__ import annotations

from typing import Callable

import msgspec


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """One progress report.

    ``stage`` is one of: ``bootstrap`` (debootstrap output), ``import`` (rootfs into the engine),
    ``probe`` (inspecting the base image), ``wheelhouse`` (host-side wheels), ``build`` (engine
    build log lines), ``reuse`` (the tag already exists; nothing is built), ``done``.
    """

    stage: str
    message: str


ProgressFn = Callable[[Progress], None]


def reporter(progress: ProgressFn | None) -> Callable[[str, str], None]:
    """A two-argument shortcut that ignores reports when nobody listens."""

    def report(stage: str, message: str) -> None:
        if progress is not None:
            progress(Progress(stage=stage, message=message))

    return report
