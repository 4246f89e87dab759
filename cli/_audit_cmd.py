"""``corral audit``: tail the stream; verify, export and sign the audit log."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import click
import msgspec

from protocol import Client, Subjects

from ._common import nats_option, prefix_option, run_cli

DEFAULT_DIR = ".corral/audit"
dir_argument = click.argument("directory", default=DEFAULT_DIR, required=False, type=click.Path(file_okay=False))


@click.group()
def audit() -> None:
    """Read the durable record of every action and observation; check the audit log."""


@audit.command("tail")
@nats_option
@prefix_option
@click.option("--session", "session_id", default=None)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events")
@click.option("--since", "since_seq", type=int, default=None, help="Start at this stream sequence")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
def audit_tail(nats_url: str, prefix: str, session_id: str | None, follow: bool, since_seq: int | None,
               as_json: bool) -> None:
    """Print the stored events of every session (or one), from the stream."""
    from actors.audit import records

    async def main() -> None:
        async with await Client.connect(nats_url) as client:
            async for rec in records(client.nats, Subjects(prefix), session_id=session_id, follow=follow,
                                     since_seq=since_seq):
                if as_json:
                    click.echo(msgspec.json.encode(rec).decode())
                else:
                    who = f"{rec.tenant}/{rec.session_id}" if rec.tenant else rec.session_id
                    summary = _summary(rec.event)
                    click.echo(f"{rec.seq:>8} {rec.time[:23]} {who} {rec.channel:6} {rec.kind:12} {summary}")

    try:
        run_cli(main())
    except KeyboardInterrupt:
        pass


def _summary(event: dict | None) -> str:
    if not event:
        return ""
    for key in ("command", "path", "message", "content", "data", "status", "code", "url"):
        if key in event and event[key] is not None:
            text = str(event[key]).replace("\n", "\\n")
            return f"{key}={text[:80]}"
    return ""


@audit.command("verify")
@dir_argument
@click.option("--key", "key_file", type=click.Path(dir_okay=False), default=None,
              help="The operator's public key (PEM): every record must carry a valid signature")
@click.option("--anchor", default=None, help="The prev of the first record, if older files were deleted on purpose")
@click.option("--head", "expect_head", default=None,
              help="A head hash published earlier: it must be in the log (detects a cut-off end)")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object")
def audit_verify(directory: str, key_file: str | None, anchor: str | None, expect_head: str | None,
                 as_json: bool) -> None:
    """Check the hash chain (and signatures) of the audit log in DIRECTORY across all its day
    files; name the first bad record and exit 1, or print a one-line summary and exit 0."""
    from actors.audit import GENESIS, load_public_key, verify_log

    with _audit_errors():
        key = load_public_key(key_file) if key_file else None
        report = verify_log(directory, public_key=key, anchor=anchor or GENESIS, expect_head=expect_head)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        click.echo(report.summary(), err=not report.ok)
    if not report.ok:
        sys.exit(1)


@audit.command("export")
@dir_argument
@click.option("--session", "session_id", required=True)
@click.option("--tenant", default=None, help="Only the session of this tenant ('' for the deployment's own)")
@click.option("-o", "--output", default="-", type=click.Path(dir_okay=False, allow_dash=True), show_default=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False), default=None,
              help="Also check every signature with this public key before exporting")
@click.option("--no-verify", is_flag=True, help="Export even if the chain does not verify")
def audit_export(directory: str, session_id: str, tenant: str | None, output: str, key_file: str | None,
                 no_verify: bool) -> None:
    """Write one session's full trail, ordered by stream sequence, as JSON Lines (the records as
    stored, so each keeps its prev and sig)."""
    from actors.audit import export_session, load_public_key

    with _audit_errors():
        key = load_public_key(key_file) if key_file else None
        with click.open_file(output, "wb") as out:
            n = export_session(directory, session_id, out, tenant=tenant, public_key=key, verify=not no_verify)
    if n == 0:
        raise click.ClickException(f"unknown_session: no record of session {session_id} in {directory}")
    click.echo(f"{n} records of session {session_id}", err=True)


@audit.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False))
def audit_keygen(path: str) -> None:
    """Write a new Ed25519 key pair: PATH (private, mode 0600; give it to the writer's --audit-key)
    and PATH.pub (public; give it to `corral audit verify --key`)."""
    from actors.audit import generate_key_pair

    with _audit_errors():
        private, public = generate_key_pair(path)
    click.echo(f"private key {private} (keep it secret), public key {public}")


@contextlib.contextmanager
def _audit_errors() -> Iterator[None]:
    """An audit log or key problem is the command's error: its code and message, exit 1."""
    from actors.audit import AuditError

    try:
        yield
    except AuditError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
