"""``corral tenant add|list|remove`` and ``corral secure init``: the users of a secure deployment.

They work on ``<data dir>/secure`` (``actors.secure``) and reload the broker that ``corral up
--secure`` runs from that data dir, so a tenant added is served at once, without a restart.
"""

from __future__ import annotations

from pathlib import Path
import sys

import click
from actors.secure import SecureStore, TlsFiles
from protocol import encode_credentials

from ._common import print_json, run_cli

data_dir_option = click.option("--data-dir", default=".corral", show_default=True,
                               help="The data dir of `corral up --secure` (or of `corral secure init`)")


@click.group()
def tenant() -> None:
    """Tenants of a secure deployment: each reaches only its own sessions."""


@tenant.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["client", "approver"]), default="client", show_default=True,
              help="approver: may also publish `confirm` (release or reject held actions)")
@data_dir_option
def tenant_add(name: str, role: str, data_dir: str) -> None:
    """Add a tenant's user and print its credentials (one JSON object; also in its creds_file)."""
    store = SecureStore(data_dir)

    async def main() -> None:
        creds = store.add_tenant(name, role)  # type: ignore[arg-type]
        if not await store.reload(probe=creds):
            _not_reloaded(store)
        click.echo(encode_credentials(creds).decode())

    run_cli(main())


@tenant.command("list")
@data_dir_option
def tenant_list(data_dir: str) -> None:
    """Every tenant and its roles (JSON)."""
    print_json(SecureStore(data_dir).tenants())


@tenant.command("remove")
@click.argument("name")
@data_dir_option
def tenant_remove(name: str, data_dir: str) -> None:
    """Remove every user of a tenant; the broker drops their connections. Its sessions run on
    until closed or reaped (the operator's admin credentials still reach them)."""
    store = SecureStore(data_dir)

    async def main() -> None:
        removed = store.remove_tenant(name)
        if removed and not await store.reload():
            _not_reloaded(store)
        print_json({"tenant": name, "removed": removed})

    run_cli(main())


@click.group()
def secure() -> None:
    """The broker configuration of a secure deployment."""


@secure.command("init")
@data_dir_option
@click.option("--prefix", default="corral", show_default=True, help="Subject prefix")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The broker's host name as clients reach it (in every credentials file)")
@click.option("--port", default=4222, show_default=True, help="The broker's client port")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The CA clients verify the certificate with (default: the certificate itself)")
def secure_init(data_dir: str, prefix: str, host: str, port: int, tls_cert: str | None, tls_key: str | None,
                tls_ca: str | None) -> None:
    """Write the broker configuration and the deployment's credentials for a broker of your own
    (e.g. compose/secure.yml): `nats-server -js -c <data dir>/secure/nats.conf`."""
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("TLS needs both --tls-cert and --tls-key")
    tls = None
    if tls_cert and tls_key:
        cert = str(Path(tls_cert).absolute())
        tls = TlsFiles(cert_file=cert, key_file=str(Path(tls_key).absolute()),
                       ca_file=str(Path(tls_ca).absolute()) if tls_ca else cert)
    store = SecureStore(data_dir)
    users = store.init(prefix=prefix, host=host, port=port, tls=tls)
    print_json({"config_file": str(store.config_file), "nats_url": users.nats_url,
                "creds": {u.user: str(store.creds_path(u.user)) for u in users.users}})


def _not_reloaded(store: SecureStore) -> None:
    print(f"corral: no broker of {store.root.parent} runs on this host; the change takes effect when one "
          f"(re)reads {store.config_file} (for a broker in a container: send it SIGHUP twice)", file=sys.stderr)
