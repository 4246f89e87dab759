"""Entrypoint of the compose `audit` service: actors.audit.AuditWriter as a standalone observer.

    python audit_writer.py [--nats URL] [--prefix P] [--dir DIR] [--key PEM]

Appends every stored action, observation, decision and status of every session (the
deployment's own and every tenant's) to a hash-chained JSON Lines log in DIR, one
``audit-YYYY-MM-DD.jsonl`` per UTC day, each record signed with the Ed25519 key PEM when one is
given. A restarted writer continues after the log's last record. The CORRAL stream is made here
too (idempotently), so the writer does not depend on the controller having started first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import structlog

from actors import ensure_stream
from actors import Supervisor
from actors.audit import AuditWriter, AuditWriterConfig
from actors.secrets import mask_log_secrets
from protocol import Subjects, connect_nats

log = structlog.get_logger()


async def serve(nats_url: str, prefix: str, directory: str, key_file: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    subjects = Subjects(prefix)
    creds = os.environ.get("CORRAL_NATS_CREDS") or None  # compose/secure.yml: the observer's
    nc = await connect_nats(nats_url, name="corral-audit", first_attempts=30, creds=creds)
    supervisor = Supervisor("audit")
    try:
        if creds is None:  # an observer may not make streams: the controller makes it
            await ensure_stream(nc.jetstream(), subjects)
        writer = AuditWriter(nc, subjects, AuditWriterConfig(directory=directory, key_file=key_file))
        await writer.open()
        supervisor.start("writer", writer.run)
        log.info("audit_writer_started", nats=nats_url, directory=directory, signed=key_file is not None)
        await stop.wait()
    finally:
        await supervisor.aclose()
        # close, not drain: the cancelled writer's pull subscription never drains, and drain()
        # would then sit out its 30 s timeout. Every written batch is already acked.
        await nc.close()
        log.info("audit_writer_stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description="corral audit writer (an observer)")
    parser.add_argument("--nats", default=os.environ.get("CORRAL_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--prefix", default="corral")
    parser.add_argument("--dir", default="/var/lib/corral-audit", help="The log's directory (day files)")
    parser.add_argument("--key", default=os.environ.get("CORRAL_AUDIT_KEY") or None,
                        help="Sign every record with this Ed25519 private key (PEM)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.format_exc_info, mask_log_secrets, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, args.log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(serve(args.nats, args.prefix, args.dir, args.key))


if __name__ == "__main__":
    main()
