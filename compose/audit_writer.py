"""Entrypoint of the compose `audit` service: actors.audit.AuditWriter as a standalone observer.

    python audit_writer.py [--nats URL] [--prefix P] [--path FILE]

Appends every stored action, observation and status of every session to FILE (JSONL) through a
durable consumer, so a restarted writer continues where it stopped. The CORRAL stream is made
here too (idempotently), so the writer does not depend on the controller having started first.
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
from actors.audit import AuditWriter
from actors.secrets import mask_log_secrets
from protocol import Subjects, connect_nats

log = structlog.get_logger()


async def serve(nats_url: str, prefix: str, path: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    subjects = Subjects(prefix)
    nc = await connect_nats(nats_url, name="corral-audit", first_attempts=30)
    supervisor = Supervisor("audit")
    try:
        await ensure_stream(nc.jetstream(), subjects)
        supervisor.start("writer", AuditWriter(nc, subjects, path).run)
        log.info("audit_writer_started", nats=nats_url, path=path)
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
    parser.add_argument("--path", default="/var/lib/corral-audit/events.jsonl")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.format_exc_info, mask_log_secrets, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, args.log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(serve(args.nats, args.prefix, args.path))


if __name__ == "__main__":
    main()
