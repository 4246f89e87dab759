"""Wrap a root file system as a one-layer image archive (the `docker save` format) for `ctr images import`.

    python3 oci_archive.py ROOTDIR REF ENTRYPOINT OUT.tar

The test cluster has no registry: images reach its containerd as archives made here.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile


def layer_bytes(root: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=".", filter=_owned_by_root)
    return buf.getvalue()


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def archive(root: str, ref: str, entrypoint: str, out: str) -> None:
    layer = layer_bytes(root)
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [entrypoint], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created_by": "corral test cluster"}],
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_id}.json", "RepoTags": [ref], "Layers": [f"{layer_id}/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in ((f"{layer_id}/layer.tar", layer), (f"{config_id}.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    archive(*sys.argv[1:])
