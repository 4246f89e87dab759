"""Writes the golden wire files. Run once per protocol version; never rewrite an old version's files."""

from pathlib import Path
import sys

from samples import ACTIONS, OBSERVATIONS, REPLIES, SPECS

from protocol import encode

version = sys.argv[1]
out = Path(__file__).parent / "golden" / version
out.mkdir(parents=True, exist_ok=False)
for name, items in (("actions", ACTIONS), ("observations", OBSERVATIONS), ("replies", REPLIES), ("specs", SPECS)):
    for i, item in enumerate(items):
        (out / f"{name}-{i:02d}.msgpack").write_bytes(encode(item))
        (out / f"{name}-{i:02d}.json").write_bytes(encode(item, json=True))
