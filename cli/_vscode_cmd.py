"""`corral vscode`: code-server on the host, for the vscode plugin (image variant and local sandboxes)."""

from __future__ import annotations

import asyncio

import click


@click.group()
def vscode() -> None:
    """code-server (VS Code in a browser tab) for sessions with the vscode plugin."""


@vscode.command("install")
@click.option("--cache-dir", default=None, help="Corral's cache (default /var/cache/corral, env CORRAL_CACHE_DIR)")
@click.option("--quiet", "-q", is_flag=True, help="No npm log")
def vscode_install(cache_dir: str | None, quiet: bool) -> None:
    """npm install the pinned code-server into the cache, once; print its install root.

    Local and bubblewrap sandboxes run it from there; `corral image build --with vscode` copies it
    into the image. Needs node 20, npm, python3, make, g++, libkrb5-dev and ripgrep on the host."""
    from images import ImageError, code_server_stamp, install_code_server

    def show(p: object) -> None:
        stage, message = getattr(p, "stage"), getattr(p, "message")
        if not quiet or stage in ("reuse", "done"):
            click.echo(f"[{stage}] {message}", err=True)

    try:
        root = asyncio.run(install_code_server(cache_dir, progress=show))
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    stamp = code_server_stamp(root)
    assert stamp is not None
    click.echo(f"{root} {stamp.bytes / 1e6:.0f}MB installed in {stamp.seconds:.0f}s", err=True)
    click.echo(str(root))
