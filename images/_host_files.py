"""Host files of image variants (``# host-files: NAME``): directories made on the host, COPYed in.

Some variants install what the image cannot fetch itself (no network, or a TLS-intercepting proxy
it does not trust) and pip cannot provide: code-server and its node, say. A provider makes such
a directory on the host, once, in the cache, and names its content with a digest that goes into
the image's tag. The directory is put into the build context at ``{{ files }}/NAME/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable

import msgspec

from ._errors import ImageError
from ._progress import ProgressFn


class HostFiles(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    """The directory to copy into the build context."""
    digest: str
    """What it holds, for the image's tag (versions, or a content hash)."""


Provider = Callable[[Path, "ProgressFn | None"], Awaitable[HostFiles]]


async def _code_server(cache: Path, progress: ProgressFn | None) -> HostFiles:
    from ._code_server import install_code_server, read_stamp

    root = await install_code_server(cache, progress=progress)
    stamp = read_stamp(root)
    assert stamp is not None
    return HostFiles(path=root, digest=f"code-server {stamp.version} node {stamp.node_version}")


PROVIDERS: dict[str, Provider] = {"code-server": _code_server}


async def host_files(name: str, cache: Path, progress: ProgressFn | None) -> HostFiles:
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ImageError(f"no provider of host files named {name!r} (known: {', '.join(sorted(PROVIDERS))})")
    return await provider(cache, progress)
