"""The operator's Ed25519 key pair: PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key)."""

from __future__ import annotations

import os
import stat

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
import structlog

from ._format import AUDIT_KEY_EXISTS, AUDIT_KEY_INVALID, AuditError

log = structlog.get_logger()

__all__ = ["Ed25519PrivateKey", "Ed25519PublicKey", "generate_key_pair", "load_private_key", "load_public_key",
           "signature_valid"]


def generate_key_pair(path: str) -> tuple[str, str]:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub``; never
    overwrite an existing file. Returns both paths."""
    public_path = path + ".pub"
    for existing in (path, public_path):
        if os.path.exists(existing):
            raise AuditError(AUDIT_KEY_EXISTS, f"{existing} exists; remove it or choose another path")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    with open(public_path, "xb") as out:
        out.write(public_pem)
    return path, public_path


def load_private_key(path: str) -> Ed25519PrivateKey:
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditError(AUDIT_KEY_INVALID, f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(AUDIT_KEY_INVALID, f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("audit_key_readable_by_others", path=path, mode=oct(mode & 0o777))
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditError(AUDIT_KEY_INVALID, f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(AUDIT_KEY_INVALID, f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def signature_valid(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise AuditError(AUDIT_KEY_INVALID, f"cannot read the key {path}: {exc.strerror}") from None
