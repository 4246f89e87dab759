"""What every `corral` command shares: logging set-up, running a coroutine, the --nats and --creds options."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Awaitable, Callable

import click
import msgspec
import structlog

from actors.secrets import mask_log_secrets
from protocol import CREDS_ENV, Client, CorralError, load_credentials
from workers.backends import BackendError

DEFAULT_NATS = os.environ.get("CORRAL_NATS_URL", "nats://127.0.0.1:4222")


def configure_logging(level: str, as_json: bool) -> None:
    processors: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                             structlog.processors.TimeStamper(fmt="iso")]
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        # mask_log_secrets: the live sessions' secret values never reach a log line (after tracebacks are text)
        processors=[*processors, structlog.processors.format_exc_info, mask_log_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` writes every asyncio task's stack to stderr: what a stuck process waits on."""
    import signal

    def dump() -> None:
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        sys.stderr.flush()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def run_cli(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        dump_tasks_on_sigusr1()
        return await coro

    try:
        return asyncio.run(main())
    except CorralError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    except BackendError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None


def _use_creds(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    """``--creds FILE`` (or ``$CORRAL_NATS_CREDS``): every connection this command makes logs in
    with it (``Client.connect`` reads the variable), and its broker is the default ``--nats``."""
    if not path:
        return
    try:
        ctx.meta["corral_creds"] = load_credentials(path)
    except CorralError as exc:
        raise click.BadParameter(exc.message, ctx=ctx, param_hint="--creds") from None
    os.environ[CREDS_ENV] = os.path.abspath(path)


def _nats_url(ctx: click.Context, _param: click.Parameter, url: str | None) -> str:
    creds = ctx.meta.get("corral_creds")
    return url or (creds.nats_url if creds is not None else DEFAULT_NATS)


def nats_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--nats URL`` and ``--creds FILE`` (the credentials of ``corral tenant add``)."""
    fn = click.option("--nats", "nats_url", default=None, callback=_nats_url,
                      help=f"NATS URL (env CORRAL_NATS_URL; default the credentials' broker, else {DEFAULT_NATS})")(fn)
    return click.option("--creds", type=click.Path(dir_okay=False), envvar=CREDS_ENV, expose_value=False,
                        is_eager=True, callback=_use_creds,
                        help=f"Log in with this credentials file (env {CREDS_ENV}; `corral tenant add` prints one)")(fn)


def current_creds() -> str | None:
    """The credentials file ``--creds`` named, for components that take it in their config."""
    return os.environ.get(CREDS_ENV) or None

prefix_option = click.option("--prefix", default="corral", show_default=True, help="Subject prefix")

def print_json(obj: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode())


def with_client(nats_url: str, fn: Callable[[Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with await Client.connect(nats_url) as client:
            return await fn(client)
    return run_cli(main())
