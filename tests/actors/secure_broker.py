"""A real nats-server started with the configuration ``corral up --secure`` generates, and
connections as its users; shared by the tests of the secure store and of tenants."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors

from actors import ensure_stream, sessions_bucket
from actors.embedded import EmbeddedNats, free_port
from actors.secure import SecureStore
from protocol import Subjects, connect_nats


@dataclass
class SecureBroker:
    store: SecureStore
    server: EmbeddedNats
    admin: Any
    conns: list[Any] = field(default_factory=list)

    async def login(self, role: str, tenant: str = "") -> tuple[Any, list[str]]:
        """A connection as that user, and the list its broker errors (permission violations) land in."""
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await connect_nats(self.server.url, name=f"test-{role}", creds=self.store.credentials(role, tenant),  # type: ignore[arg-type]
                                error_cb=on_error)
        self.conns.append(nc)
        return nc, errors

    async def collect(self, subject: str) -> list[Any]:
        """What the admin (who may read anything) receives on ``subject`` from now on."""
        got: list[Any] = []

        async def cb(msg: Any) -> None:
            got.append(msg)

        await self.admin.subscribe(subject, cb=cb)
        await barrier(self.admin)
        return got


async def barrier(nc: Any, subject: str = "_test.barrier") -> None:
    """Returns once the server has processed everything ``nc`` sent before: a request nobody
    answers comes back as "no responders". (nats.py's ``flush()`` is no such barrier: it writes
    its PING ahead of commands still in its pending buffer, so a SUB may reach the server after.)
    A tenant's user passes a subject of its own, e.g. its lookup subjects."""
    try:
        await nc.request(subject, b"", timeout=5)
    except nats.errors.NoRespondersError:
        return


async def start_secure_broker(root: Path, tenants: tuple[str, ...] = ("a", "b")) -> tuple[SecureBroker, Any]:
    """(broker, its closer): the store made with ``tenants`` (clients) and ``a``'s approver."""
    store = SecureStore(root / "corral")
    port = free_port()
    store.init(port=port)
    for tenant in tenants:
        store.add_tenant(tenant)
    store.add_tenant(tenants[0], "approver")
    server = EmbeddedNats(str(root / "nats"), port=port, config_file=str(store.config_file))
    await server.start()
    admin = await connect_nats(server.url, name="test-admin", creds=store.credentials("admin"))
    await ensure_stream(admin.jetstream(), Subjects())
    await sessions_bucket(admin.jetstream(), Subjects())
    broker = SecureBroker(store, server, admin)

    async def close() -> None:
        for nc in [*broker.conns, admin]:
            if not nc.is_closed:
                await nc.close()
        await server.aclose()
    return broker, close


async def until(predicate: Any, timeout_s: float = 5.0) -> None:
    """Wait for a fact (an error reported, a message delivered), bounded."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout_s)
