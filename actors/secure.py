"""The secure deployment's users: the broker configuration, credential files, tenants.

Everything lives in ``<data dir>/secure`` (mode 0700): ``users.json`` (who exists, with bcrypt
hashes of their passwords), ``nats.conf`` (what ``nats-server -c`` reads: the users and their
``actors._permissions``, TLS), and ``creds/<user>.json``, each user's one JSON credentials
object with the only plaintext copy of its password. All files are 0600. Passwords are 32
random bytes (``secrets.token_urlsafe``), so a low bcrypt cost is enough: it slows nobody's
guessing of a 256-bit token, and it keeps every connect fast (the broker checks the hash at
each one).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from pathlib import Path
import secrets
import signal
from typing import Any, Iterator

import msgspec
import nats.errors

from protocol import (
    TENANT_NAME,
    CorralError,
    Credentials,
    Subjects,
    codes,
    connect_nats,
    encode_credentials,
    load_credentials,
)

from ._permissions import INTERNAL_ROLES, TENANT_ROLES, Role, inbox_prefix, permissions, tenant_shares

BCRYPT_ROUNDS = 6
RELOAD_TIMEOUT_S = 10.0


class SecureError(CorralError):
    """A secure-deployment operation that cannot be done; ``code`` is a stable wire code."""


class TlsFiles(msgspec.Struct, frozen=True, kw_only=True):
    cert_file: str
    key_file: str
    ca_file: str
    """What clients verify the server's certificate with (default: the certificate itself)."""


class User(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    role: Role
    tenant: str = ""
    password_hash: str


class Users(msgspec.Struct, kw_only=True):
    """``users.json``: the deployment's broker address and users."""

    prefix: str = "corral"
    host: str = "127.0.0.1"
    port: int = 4222
    tls: TlsFiles | None = None
    users: list[User] = []

    @property
    def nats_url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


def user_name(role: Role, tenant: str = "") -> str:
    """``controller``, …; a tenant's ``<tenant>.client`` and ``<tenant>.approver`` (a tenant name
    has no dot, so no tenant's user can be named like another's or like an internal one)."""
    return f"{tenant}.{role}" if tenant else role


class SecureStore:
    """The ``secure`` directory of one data dir. Writers take a file lock: two ``corral tenant
    add`` at once both land."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).absolute() / "secure"
        self.users_file = self.root / "users.json"
        self.config_file = self.root / "nats.conf"
        self.pid_file = self.root / "nats.pid"
        self.creds_dir = self.root / "creds"

    @property
    def exists(self) -> bool:
        return self.users_file.exists()

    def load(self) -> Users:
        if not self.exists:
            raise SecureError(codes.INVALID_ARGUMENT, f"no secure deployment in {self.root.parent} "
                                                  "(run `corral up --secure` or `corral secure init` there first)")
        return msgspec.json.decode(self.users_file.read_bytes(), type=Users)

    def creds_path(self, user: str) -> Path:
        return self.creds_dir / f"{user}.json"

    def credentials(self, role: Role, tenant: str = "") -> Credentials:
        return load_credentials(self.creds_path(user_name(role, tenant)))

    # ------------------------------------------------------------------ writes
    def init(self, *, prefix: str = "corral", host: str = "127.0.0.1", port: int = 4222,
             tls: TlsFiles | None = None) -> Users:
        """Make (or bring up to date) the deployment's own users and the configuration for this
        address and TLS; existing users and passwords are kept."""
        with self._locked():
            users = msgspec.json.decode(self.users_file.read_bytes(), type=Users) if self.exists else Users(prefix=prefix)
            if users.prefix != prefix:
                raise SecureError(codes.INVALID_ARGUMENT, f"{self.root} was made for prefix {users.prefix!r}, not {prefix!r}")
            users.host, users.port, users.tls = host, port, tls
            have = {u.user for u in users.users}
            for role in INTERNAL_ROLES:
                if role not in have:
                    users.users.append(self._new_user(users, role))
            self._save(users)
            return users

    def add_tenant(self, tenant: str, role: Role = "client") -> Credentials:
        """Add (or, if it exists, return) the tenant's user of ``role``; the caller reloads the broker."""
        if not TENANT_NAME.fullmatch(tenant):
            raise SecureError(codes.INVALID_ARGUMENT, f"tenant name {tenant!r}: lower-case letters, digits, '_' and '-', "
                                                  "starting with a letter or digit, at most 32")
        if role not in TENANT_ROLES:
            raise SecureError(codes.INVALID_ARGUMENT, f"role {role!r}: a tenant's role is one of {', '.join(TENANT_ROLES)}")
        with self._locked():
            users = self.load()
            name = user_name(role, tenant)
            if not any(u.user == name for u in users.users):
                users.users.append(self._new_user(users, role, tenant))
                self._save(users)
            return load_credentials(self.creds_path(name))

    def remove_tenant(self, tenant: str) -> list[str]:
        """Remove every user of the tenant; returns their names (the caller reloads the broker)."""
        with self._locked():
            users = self.load()
            gone = [u.user for u in users.users if u.tenant == tenant and tenant]
            users.users = [u for u in users.users if u.user not in gone]
            for name in gone:
                self.creds_path(name).unlink(missing_ok=True)
            self._save(users)
            return gone

    def tenants(self) -> dict[str, list[str]]:
        """Tenant -> its roles."""
        found: dict[str, list[str]] = {}
        for u in self.load().users:
            if u.tenant:
                found.setdefault(u.tenant, []).append(u.role)
        return found

    def _new_user(self, users: Users, role: Role, tenant: str = "") -> User:
        import bcrypt

        password = secrets.token_urlsafe(32)
        user = User(user=user_name(role, tenant), role=role, tenant=tenant,
                    password_hash=bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode())
        self._write_creds(users, user, password)
        return user

    def _write_creds(self, users: Users, user: User, password: str) -> None:
        path = self.creds_path(user.user)
        creds = Credentials(
            nats_url=users.nats_url, user=user.user, password=password, role=user.role, prefix=users.prefix,
            tenant=user.tenant, subject_prefix=Subjects(users.prefix, user.tenant).base,
            inbox_prefix=inbox_prefix(user.role, users.prefix, user.tenant), creds_file=str(path),
            ca_file=users.tls.ca_file if users.tls else None)
        _write_private(path, encode_credentials(creds, indent=2) + b"\n")

    def _save(self, users: Users) -> None:
        for user in users.users:  # an address or TLS change reaches every credentials file
            path = self.creds_path(user.user)
            if path.exists():
                self._write_creds(users, user, load_credentials(path).password)
        _write_private(self.config_file, render_config(users, self.pid_file).encode())
        _write_private(self.users_file, msgspec.json.format(msgspec.json.encode(users), indent=2) + b"\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.creds_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        with open(os.open(self.root / ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ the running broker
    def server_pid(self) -> int | None:
        """The pid of the nats-server running this configuration, if one runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if any(arg.endswith(b"nats-server") for arg in cmdline[:1]) and str(self.config_file).encode() in cmdline else None

    async def reload(self, probe: Credentials | None = None, *, timeout_s: float = RELOAD_TIMEOUT_S) -> bool:
        """Make the running broker read the configuration again (SIGHUP); False if none runs.

        With ``probe`` (a tenant's user just added), returns once that user can log in and its
        requests reach the core account, so what the caller prints works at once. A tenant
        account that appears in a reload gets its imports wired only by the next one (nats-server
        2.15 skips the import subscriptions of accounts it creates while reloading), hence two."""
        pid = self.server_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGHUP)
        if probe is not None:
            await wait_for_login(probe, timeout_s)  # the first reload is done
            os.kill(pid, signal.SIGHUP)
            await wait_for_import(probe, self.credentials("admin"), timeout_s)
        return True


async def wait_for_login(creds: Credentials, timeout_s: float) -> None:
    """Log in as ``creds`` until the broker accepts it (a reload takes effect within milliseconds)."""
    nc = await _login(creds, "corral-probe", asyncio.get_running_loop().time() + timeout_s)
    await nc.close()


async def wait_for_import(tenant: Credentials, admin: Credentials, timeout_s: float) -> None:
    """Until a request of the tenant's user reaches the core account (and its answer comes back):
    the admin answers on a lookup subject of the tenant that no session has. Each try logs in
    afresh: a connection made while the broker reloads may be dropped by that reload."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    subject = tenant.subjects.lookup("probe-" + secrets.token_hex(8))
    while loop.time() < deadline:
        if await _probe_once(tenant, admin, subject, deadline):
            return
        await asyncio.sleep(0.05)
    raise SecureError(codes.TIMEOUT, f"tenant {tenant.tenant}'s requests did not reach the core account within "
                                     f"{timeout_s} s after the reload")


async def _probe_once(tenant: Credentials, admin: Credentials, subject: str, deadline: float) -> bool:
    core = nc = None
    try:
        core = await _login(admin, "corral-probe-core", deadline)

        async def answer(msg: Any) -> None:
            await core.publish(msg.reply, b"ok")

        await core.subscribe(subject, cb=answer)
        await core.flush(timeout=1)
        nc = await _login(tenant, "corral-probe", deadline)
        await nc.request(subject, b"", timeout=0.5)
        return True
    except (nats.errors.Error, asyncio.TimeoutError):
        return False
    finally:
        for conn in (nc, core):
            if conn is not None:
                await conn.close()


async def _login(creds: Credentials, name: str, deadline: float) -> Any:
    """A connection as ``creds``, retried until ``deadline``: while the broker reloads it may refuse
    a login for a moment, and a user just added is unknown until its reload is done."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await connect_nats(creds.nats_url, name=name, creds=creds, first_attempts=0, allow_reconnect=False)
        except CorralError as exc:
            if loop.time() > deadline:
                raise SecureError(codes.TIMEOUT, f"the broker did not accept user {creds.user} after the reload: "
                                                 f"{exc.message}") from None
            await asyncio.sleep(0.05)


CORE_ACCOUNT = "CORRAL"
"""The account of the deployment's own users, JetStream and the KV buckets."""
RESPONSE_THRESHOLD = "5m"
"""How long a tenant's request may wait for its answer through the import (a create may wait for room)."""


def tenant_account(tenant: str) -> str:
    return f"TENANT_{tenant}"


def render_config(users: Users, pid_file: Path) -> str:
    """``nats.conf``: the core account (JetStream, the deployment's users) and one account per
    tenant that imports exactly its own subjects from it; every user with its permissions; TLS on
    the client port; the pid file (for reload)."""
    core: dict[str, object] = {"jetstream": "enabled", "users": [], "exports": [
        {kind: subject, **({"response_threshold": RESPONSE_THRESHOLD} if kind == "service" else {})}
        for kind, subject in tenant_shares(users.prefix, "*")]}
    accounts: dict[str, dict[str, object]] = {CORE_ACCOUNT: core}
    for u in users.users:
        entry = {"user": u.user, "password": u.password_hash,
                 "permissions": permissions(u.role, users.prefix, u.tenant).as_config()}
        if not u.tenant:
            core["users"].append(entry)  # type: ignore[attr-defined]
            continue
        account = accounts.setdefault(tenant_account(u.tenant), {"users": [], "imports": [
            {kind: {"account": CORE_ACCOUNT, "subject": subject}} for kind, subject in tenant_shares(users.prefix, u.tenant)]})
        account["users"].append(entry)  # type: ignore[attr-defined]
    lines = ["# Generated by corral (actors/secure.py) from users.json: edits are overwritten.",
             f"pid_file: {json.dumps(str(pid_file))}",
             f"accounts: {json.dumps(accounts, indent=2)}"]
    if users.tls is not None:
        tls = {"cert_file": users.tls.cert_file, "key_file": users.tls.key_file}
        lines.append(f"tls: {json.dumps(tls, indent=2)}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable only by this user (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # an older file of that name kept its mode
    os.replace(tmp, path)
