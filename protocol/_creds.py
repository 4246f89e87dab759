"""Broker credentials of one user (``corral tenant add`` prints them; ``--creds FILE`` reads them).

The file is one JSON object: where the broker is, who the user is, and which subjects its
sessions use. ``Client.connect(creds=PATH)`` and ``connect_nats(creds=...)`` turn it into nats.py
options: user and password, the inbox prefix the broker lets it read replies on, the TLS CA.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from . import _errors as codes
from ._errors import CorralError
from ._subjects import DEFAULT_PREFIX, Subjects

CREDS_ENV = "CORRAL_NATS_CREDS"


class CredentialsError(CorralError):
    """A credentials file that cannot be read or does not hold credentials (code ``invalid_argument``)."""

    def __init__(self, message: str) -> None:
        super().__init__(codes.INVALID_ARGUMENT, message)


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str
    user: str
    password: str
    role: str
    prefix: str = DEFAULT_PREFIX
    tenant: str = ""
    """Empty for the deployment's own users (admin, controller, worker, observer)."""
    subject_prefix: str = ""
    """``<prefix>.t.<tenant>``: where the tenant's control requests and sessions live."""
    inbox_prefix: str = "_INBOX"
    creds_file: str = ""
    ca_file: str | None = None
    """The CA that signed the broker's TLS certificate (``tls://`` URLs)."""

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix, self.tenant)

    def nats_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {"user": self.user, "password": self.password, "inbox_prefix": self.inbox_prefix}
        if self.ca_file:
            import ssl  # only here: the executor imports this package and must start fast

            options["tls"] = ssl.create_default_context(cafile=self.ca_file)
        return options


_decoder = msgspec.json.Decoder(Credentials)


def encode_credentials(creds: Credentials, *, indent: int = 0) -> bytes:
    """One JSON object; ``ca_file`` only when the broker has TLS."""
    fields = {k: v for k, v in msgspec.to_builtins(creds).items() if v is not None}
    data = msgspec.json.encode(fields)
    return msgspec.json.format(data, indent=indent) if indent else data


def load_credentials(path: str | os.PathLike[str]) -> Credentials:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {os.fspath(path)!r}: {exc.strerror}") from None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CredentialsError(f"{os.fspath(path)!r} is not a corral credentials file: {exc}") from None


def credentials_from(creds: str | os.PathLike[str] | Credentials | None, *, env: bool = False) -> Credentials | None:
    """``creds`` as Credentials (a path is read); with ``env``, ``$CORRAL_NATS_CREDS`` when none is given."""
    if creds is None and env:
        creds = os.environ.get(CREDS_ENV) or None
    if creds is None or isinstance(creds, Credentials):
        return creds
    return load_credentials(creds)
