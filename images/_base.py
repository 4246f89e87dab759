"""What a base image offers: its Python, machine, libc and init — probed once per image id."""

from __future__ import annotations

import json
from pathlib import Path

import aiodocker
import msgspec

from ._engine import image_inspect, run_to_completion
from ._errors import BaseImageUnsuitable, ImageError
from ._progress import ProgressFn, reporter

MIN_PYTHON = (3, 11)

_PROBE = """
import json, os, platform, shutil, sys
tini = next((p for p in ("/usr/bin/tini", "/sbin/tini", "/usr/local/bin/tini") if os.access(p, os.X_OK)), "")
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "machine": platform.machine(),
                  "libc": list(platform.libc_ver()), "tini": tini}))
"""


class BaseFacts(msgspec.Struct, frozen=True, kw_only=True):
    image_id: str
    python: str
    """major.minor of the base's python3."""
    machine: str
    glibc: str
    """glibc version ("2.36"); empty for other C libraries."""
    tini: str
    """Path of tini in the base, empty when it has none."""


async def probe_base(docker: aiodocker.Docker, image: str, *, cache_dir: Path,
                     progress: ProgressFn | None = None) -> BaseFacts:
    """Inspect ``image`` (which must exist) by running python3 in it once; cached per image id."""
    found = await image_inspect(docker, image)
    if found is None:
        raise ImageError(f"image {image!r} vanished while being probed")
    image_id: str = found["Id"]
    cached = cache_dir / "probes" / f"{image_id.removeprefix('sha256:')}.json"
    if cached.exists():
        facts = msgspec.json.decode(cached.read_bytes(), type=BaseFacts)
    else:
        reporter(progress)("probe", f"probing {image} ({image_id[:19]}) for python3, libc and tini")
        code, output = await run_to_completion(docker, {
            "Image": image_id, "Entrypoint": ["python3", "-c", _PROBE], "Cmd": [], "User": "0",
            "NetworkDisabled": True, "HostConfig": {"NetworkMode": "none"},
        }, name_hint="probe")
        if code != 0:
            raise BaseImageUnsuitable(image, f"`python3` does not run in it (exit {code}): {output.strip()[-300:]}")
        raw = json.loads(output.strip().splitlines()[-1])
        libc_name, libc_version = raw["libc"]
        facts = BaseFacts(image_id=image_id, python=raw["python"], machine=raw["machine"],
                          glibc=libc_version if libc_name == "glibc" else "", tini=raw["tini"])
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(msgspec.json.encode(facts))
    if tuple(int(x) for x in facts.python.split(".")) < MIN_PYTHON:
        raise BaseImageUnsuitable(image, f"its python3 is {facts.python}; the executor needs >= 3.11")
    if not facts.glibc:
        raise BaseImageUnsuitable(image, "its C library is not glibc; only glibc (manylinux) wheels are built for now")
    return facts
