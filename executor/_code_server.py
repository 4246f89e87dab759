"""Where the ``vscode`` plugin finds code-server: an *install root* and its layout.

An install root holds ``node_modules/code-server`` (npm-installed, with its native modules), the
node that built them at ``node/bin/node``, and ``install.json`` (its stamp, written last, so a root
without it is incomplete). The host makes roots (``images.install_code_server``, the writer of this
layout; ``tests/plugins/test_vscode.py`` checks the two agree); a sandbox finds one at
``$CORRAL_CODE_SERVER`` when set (the local backend sets it to the host cache's), else at the
image's ``/opt/corral/code-server`` (the ``vscode`` variant; bubblewrap binds the host's there).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

ROOT_ENV = "CORRAL_CODE_SERVER"
IMAGE_ROOT = "/opt/corral/code-server"
STAMP = "install.json"
ENTRY = "node_modules/code-server/out/node/entry.js"
NODE = "node/bin/node"
INSTALL_HINT = ("build the image variant for Docker sandboxes (corral image build --with vscode), or install it "
                "on the worker's host for local and bubblewrap ones (corral vscode install)")


class Stamp(msgspec.Struct, frozen=True, kw_only=True):
    """What the executor reads of ``install.json`` (the writer records more)."""

    version: str
    node_version: str


def read_stamp(root: str | Path) -> Stamp | None:
    """The stamp of a complete install root (entry point and node present), else None."""
    try:
        stamp = msgspec.json.decode(Path(root, STAMP).read_bytes(), type=Stamp)
    except (OSError, msgspec.DecodeError):
        return None
    if not Path(root, ENTRY).is_file() or not os.access(Path(root, NODE), os.X_OK):
        return None
    return stamp


def find_install() -> Path | None:
    """``$CORRAL_CODE_SERVER`` when set (then only it), else the image's root; None when incomplete."""
    root = os.environ.get(ROOT_ENV) or IMAGE_ROOT
    return Path(root) if read_stamp(root) is not None else None
