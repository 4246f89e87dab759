"""`corral image`: the base image bootstrap and the runtime image builder."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import click

from ._common import print_json


@click.group()
def image() -> None:
    """Make sandbox images locally: no registry is needed (see images/)."""


def _image_call(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run fn(docker) against the engine; image errors become one clear message."""
    from images import ImageError, open_docker

    async def main() -> Any:
        async with open_docker() as docker:
            return await fn(docker)

    try:
        return asyncio.run(main())
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None


def _image_progress(quiet: bool) -> Callable[[Any], None]:
    def show(p: Any) -> None:
        if not quiet or p.stage in ("reuse", "done"):
            click.echo(f"[{p.stage}] {p.message}", err=True)
    return show


async def _image_size_mb(docker: Any, name: str) -> float:
    return (await docker.images.inspect(name)).get("Size", 0) / 1e6


@image.command("bootstrap")
@click.option("--mirror", default=None, help="Debian mirror (default http://deb.debian.org/debian)")
@click.option("--suite", default=None, help="Debian suite (default bookworm)")
@click.option("--cache-dir", default=None, help="Where the rootfs tarball is cached (default /var/cache/corral, env CORRAL_CACHE_DIR)")
@click.option("--refresh", is_flag=True, help="Run debootstrap and import again even when the image or the cached rootfs exists")
@click.option("--quiet", "-q", is_flag=True, help="No debootstrap log")
def image_bootstrap(mirror: str | None, suite: str | None, cache_dir: str | None, refresh: bool, quiet: bool) -> None:
    """Make the base image corral-base:<suite> with debootstrap (python3, tini, ca-certificates)."""
    import time

    from images import BootstrapConfig, bootstrap_base_image

    overrides = {k: v for k, v in (("mirror", mirror), ("suite", suite), ("cache_dir", cache_dir)) if v}
    config = BootstrapConfig(**overrides)

    async def run(docker: Any) -> None:
        started = time.monotonic()
        name = await bootstrap_base_image(docker, config, progress=_image_progress(quiet), refresh=refresh)
        size = await _image_size_mb(docker, name)
        click.echo(f"[done] {name} {size:.0f}MB {time.monotonic() - started:.1f}s", err=True)
        click.echo(name)

    _image_call(run)


@image.command("build")
@click.option("--base", default=None, help="Base image with python3 >= 3.11 (default corral-base:bookworm, bootstrapped when missing)")
@click.option("--with", "variants", multiple=True,
              help="Add variants (jupyter, agent_skills; comma-separated or repeated); each brings what it requires")
@click.option("--uid", default=1000, show_default=True, help="uid of the sandbox user `corral`")
@click.option("--gid", default=None, type=int, help="gid of the sandbox user (default: the uid)")
@click.option("--ca-cert", "ca_certs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="PEM CA certificate to trust inside the image; repeatable")
@click.option("--host-ca", is_flag=True, help="Trust the host's CA bundle inside the image")
@click.option("--cache-dir", default=None, help="Wheelhouse and rootfs cache (default /var/cache/corral)")
@click.option("--quiet", "-q", is_flag=True, help="No build log")
def image_build(base: str | None, variants: tuple[str, ...], uid: int, gid: int | None, ca_certs: tuple[str, ...],
                host_ca: bool, cache_dir: str | None, quiet: bool) -> None:
    """Build the runtime image (reused when its content hash exists); prints its tag."""
    import time

    from images import HOST_CA_BUNDLE, ensure_runtime_image

    certs = [*ca_certs, *([str(HOST_CA_BUNDLE)] if host_ca else [])]
    names = [name.strip() for value in variants for name in value.split(",") if name.strip()]

    async def run(docker: Any) -> None:
        started = time.monotonic()
        tag = await ensure_runtime_image(docker, base=base, variants=names, uid=uid, gid=gid, ca_certs=certs,
                                         cache_dir=cache_dir, progress=_image_progress(quiet))
        size = await _image_size_mb(docker, tag)
        click.echo(f"[image] {tag} {size:.0f}MB {time.monotonic() - started:.1f}s", err=True)
        click.echo(tag)

    _image_call(run)


@image.command("ls")
@click.option("--json", "as_json", is_flag=True)
def image_ls(as_json: bool) -> None:
    """List corral's images (bases and runtimes) with size, age and variants."""
    import datetime

    from images import list_corral_images

    found = _image_call(list_corral_images)
    if as_json:
        return print_json(found)
    click.echo(f"{'IMAGE':44} {'KIND':8} {'SIZE':>8}  {'CREATED':19}  VARIANTS")
    for img in found:
        created = datetime.datetime.fromtimestamp(img.created).strftime("%Y-%m-%d %H:%M:%S")
        variants = ",".join(img.variants) or "-"
        for name in img.tags or (img.id[7:19],):
            click.echo(f"{name:44} {img.kind:8} {img.size_bytes / 1e6:>6.0f}MB  {created}  {variants}")


# ------------------------------------------------------------------------------------ batch
