"""``corral-executor``: the process inside every sandbox, or on a machine you bring.

Two ways to configure it:

* by a backend: the environment variable CORRAL_EXECUTOR_CONFIG (JSON of ExecutorConfig), so the
  session key never shows in the process list; the variable is removed before any shell starts
  (or a path to a file of that JSON as the only argument);
* by hand, on a VM or a bare-metal box that the ``remote`` backend claims::

      corral-executor --listen tcp://0.0.0.0:8700 --key-file /etc/corral/key \\
          [--tls-cert server.pem --tls-key server-key.pem] [--workdir DIR] [--output-dir DIR]

  It serves sessions one after another: each gets fresh directories under the workdir and the
  output dir, removed (with the session's shells and plugins) when its worker releases it.

When listening, one JSON line goes to stdout: ``{"ready": true, "pid": ..., "port": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import stat
import sys
import tempfile
from urllib.parse import urlsplit

import msgspec

from ._server import Executor, ExecutorConfig, ExecutorServer

CONFIG_ENV = "CORRAL_EXECUTOR_CONFIG"
MIN_KEY_CHARS = 16


async def _serve(config: ExecutorConfig) -> None:
    os.makedirs(config.output_dir, exist_ok=True)
    executor = Executor(config)
    server = ExecutorServer(executor, config)
    await executor.start()
    await server.start()
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "port": server.port}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()
        await executor.aclose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral-executor", description="Serve one sandbox's actions (see docs/remote.md for running one on a VM).")
    parser.add_argument("config_file", nargs="?", help=f"a JSON ExecutorConfig (default: ${CONFIG_ENV})")
    parser.add_argument("--listen", metavar="tcp://HOST:PORT", help="serve on TCP (port 0: any free port)")
    parser.add_argument("--key-file", help="the key workers must present (Authorization: Bearer); mode 0600")
    parser.add_argument("--tls-cert", help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--workdir", help="where sessions' directories are made (default: the current directory)")
    parser.add_argument("--output-dir", help="where full command outputs are kept (default: a new temporary directory)")
    return parser


def _read_key(path: str) -> str:
    """The key in ``path``; refuses a file every user can read, warns about a group-readable one."""
    try:
        mode = os.stat(path).st_mode
        with open(path) as f:
            key = f.read().strip()
    except OSError as exc:
        sys.exit(f"corral-executor: cannot read the key file {path}: {exc.strerror}")
    if mode & stat.S_IROTH:
        sys.exit(f"corral-executor: the key file {path} is readable by every user (mode {stat.S_IMODE(mode):o}); "
                 f"run `chmod 600 {path}`")
    if mode & stat.S_IRGRP:
        print(f"corral-executor: warning: the key file {path} is readable by its group (mode {stat.S_IMODE(mode):o}); "
              "0600 is advised", file=sys.stderr)
    if len(key) < MIN_KEY_CHARS:
        sys.exit(f"corral-executor: the key in {path} is shorter than {MIN_KEY_CHARS} characters; make one with "
                 "`(umask 077; openssl rand -hex 32 > KEYFILE)`")
    return key


def _listen_config(args: argparse.Namespace) -> ExecutorConfig:
    address = urlsplit(args.listen)
    if address.scheme != "tcp" or not address.hostname:
        sys.exit(f"corral-executor: --listen wants tcp://HOST:PORT, not {args.listen!r}")
    try:
        port = address.port or 0
    except ValueError:
        sys.exit(f"corral-executor: bad port in {args.listen!r}")
    if not args.key_file:
        sys.exit("corral-executor: --listen needs --key-file (a file holding the key workers present)")
    if bool(args.tls_cert) != bool(args.tls_key):
        sys.exit("corral-executor: --tls-cert and --tls-key go together")
    if not args.tls_cert and address.hostname not in ("127.0.0.1", "::1", "localhost"):
        print(f"corral-executor: warning: serving {args.listen} without TLS: the key and every action cross the "
              "network in clear text (give --tls-cert and --tls-key)", file=sys.stderr)
    return ExecutorConfig(
        key=_read_key(args.key_file), workdir=os.path.abspath(args.workdir or os.getcwd()),
        output_dir=os.path.abspath(args.output_dir or tempfile.mkdtemp(prefix="corral-executor-")),
        host=address.hostname, port=port, tls_cert=args.tls_cert, tls_key=args.tls_key, session_dirs=True)


def main() -> None:
    args = _parser().parse_args()
    raw = os.environ.pop(CONFIG_ENV, None)
    if args.listen:
        config = _listen_config(args)
    else:
        if raw is None and args.config_file:
            with open(args.config_file) as f:
                raw = f.read()
        if raw is None:
            sys.exit(f"corral-executor: give --listen tcp://HOST:PORT --key-file F, or set {CONFIG_ENV} to the "
                     "executor's JSON configuration")
        try:
            config = msgspec.json.decode(raw, type=ExecutorConfig)
        except msgspec.DecodeError as exc:
            sys.exit(f"corral-executor: bad configuration: {exc}")
    try:
        asyncio.run(_serve(config))
    except OSError as exc:  # the address is taken, a certificate is missing or does not match its key
        sys.exit(f"corral-executor: cannot serve: {exc}")


if __name__ == "__main__":
    main()
