"""One way to connect to NATS: fail fast at first, reconnect forever afterwards."""

from __future__ import annotations

import logging
import os
from typing import Any

import nats
from nats.aio.client import Client as Nats
from nats.aio.subscription import Subscription
import nats.errors

from . import _errors as codes
from ._creds import Credentials, credentials_from
from ._errors import ConnectionLost

_log = logging.getLogger("corral.nats")


async def _quiet_error(exc: Exception) -> None:
    _log.debug("nats connection error: %r", exc)


async def connect_nats(url: str, *, name: str, first_attempts: int = 3,
                       creds: str | os.PathLike[str] | Credentials | None = None, **options: Any) -> Nats:
    """Connect with a bounded first attempt (a clear error when nothing listens), then never give up.

    ``creds`` (a credentials file or its contents) logs in as that user: password, inbox prefix, TLS CA."""
    found = credentials_from(creds)
    if found is not None:
        options = {**found.nats_options(), **options}
    options.setdefault("connect_timeout", 5)
    options.setdefault("reconnect_time_wait", 0.5)
    options.setdefault("error_cb", _quiet_error)
    options.setdefault("drain_timeout", 2)  # a subscription nobody reads must not hold a close for 30 s
    try:
        nc = await nats.connect(url, name=name, max_reconnect_attempts=first_attempts, **options)
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise ConnectionLost(codes.WORKER_UNAVAILABLE, f"cannot connect to NATS at {url}: {exc!r}") from exc
    nc.options["max_reconnect_attempts"] = -1  # read at each reconnect: from now on, keep trying
    return nc


async def unsubscribe_all(subs: list[Subscription]) -> None:
    """Unsubscribe each of ``subs`` and empty the list; a connection already gone is no error."""
    for sub in subs:
        try:
            await sub.unsubscribe()
        except nats.errors.Error:
            pass
    subs.clear()
