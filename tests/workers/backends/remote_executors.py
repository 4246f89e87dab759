"""Executors the way a remote machine runs them (``corral-executor --listen``), on loopback, for tests
and the remote bench: a throw-away CA and server certificate, key files, and the executors file."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
from pathlib import Path
import secrets
import signal
import sys
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class Pki(NamedTuple):
    ca_file: str
    cert_file: str
    key_file: str


def make_pki(directory: Path, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)) -> Pki:
    """A CA and a server certificate it signed, for ``names`` and ``ips``; PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral test CA " + secrets.token_hex(4))])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else ips[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server-key.pem"))
    Path(pki.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(pki.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(Path(pki.key_file), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return pki


def write_private(path: Path, data: bytes | str) -> Path:
    """A file only its owner can read (a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    return path


class RunningExecutor(NamedTuple):
    proc: asyncio.subprocess.Process
    address: str
    key_file: str
    workdir: Path

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)


async def start_executor(root: Path, *, key: str | None = None, pki: Pki | None = None) -> RunningExecutor:
    """``corral-executor --listen tcp://127.0.0.1:0`` (TLS with ``pki``), once its ready line is out."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_private(root / "key", key or secrets.token_hex(24))
    tls = ["--tls-cert", pki.cert_file, "--tls-key", pki.key_file] if pki else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "executor", "--listen", "tcp://127.0.0.1:0", "--key-file", str(key_file), *tls,
        "--workdir", str(root / "work"), "--output-dir", str(root / "out"),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, start_new_session=True)
    ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))  # type: ignore[union-attr]
    assert ready["ready"], ready
    return RunningExecutor(proc, f"tcp://127.0.0.1:{ready['port']}", str(key_file), root / "work")


async def stop_executor(executor: RunningExecutor) -> None:
    if executor.proc.returncode is None:
        try:
            os.killpg(executor.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    await executor.proc.wait()


def write_executors_file(path: Path, executors: list[RunningExecutor], ca_file: str | None = None) -> str:
    """The worker's executors file (JSON) for these executors."""
    entries = [{"address": e.address, "key_file": e.key_file, **({"ca_file": ca_file} if ca_file else {})}
               for e in executors]
    path.write_text(json.dumps(entries, indent=2))
    return str(path)
