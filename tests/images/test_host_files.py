"""Variants' host files (``# host-files:``): parsed from the header, rendered into the fragment,
streamed into the build context whole (modes and symlinks kept), and part of the tag only when used."""

from __future__ import annotations

import io
import os
import tarfile

import msgspec

from images import BuildContext, TagInputs, load_variant, runtime_tag
from images._dockerfile import render_variant


def test_the_vscode_variant_copies_the_code_server_host_files():
    variant = load_variant("vscode")
    assert variant.available and variant.host_files == ("code-server",)
    assert "COPY variant-files/vscode/code-server/ /opt/corral/code-server/" in render_variant(variant, pip_wheel="pip.whl")


def test_a_tree_goes_into_the_context_whole_with_modes_and_symlinks_owned_by_root(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(tree / "bin" / "tool", 0o755)
    os.symlink("bin", tree / "link")
    data = BuildContext(dockerfile="FROM x\n", trees={"variant-files/v/t": str(tree)}).to_tar()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    tool, link = members["variant-files/v/t/bin/tool"], members["variant-files/v/t/link"]
    assert tool.mode & 0o777 == 0o755 and (tool.uid, tool.gid, tool.uname) == (0, 0, "root")
    assert link.issym() and link.linkname == "bin"


def test_inputs_without_host_files_hash_as_before_the_field_existed():
    inputs = TagInputs(corral_version="1", base_image_id="b", executor_digest="e", wheels=(), dockerfile="d",
                       variants=(), uid=1000, gid=1000, ca_certs=())
    assert b"host_files" not in msgspec.json.encode(inputs)
    with_files = msgspec.structs.replace(inputs, host_files=(("code-server", "code-server 4.100.3 node v20.20.2"),))
    assert runtime_tag(with_files) != runtime_tag(inputs)
