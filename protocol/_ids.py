from __future__ import annotations

import os


def new_id(prefix: str = "") -> str:
    """A random 96-bit id, URL- and subject-safe (no dots)."""
    return prefix + os.urandom(12).hex()
