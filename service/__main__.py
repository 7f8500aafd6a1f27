"""CLI: `python -m service serve|token|db|pii`. Parses arguments, loads settings, nothing else."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from service import __version__
from service.api.access_log import AccessLogger
from service.api.protocol import ServiceRunner, server_options
from service.errors import ServiceUnavailable
from service.logs import LOG_FORMATS, setup_logging
from service.settings import Settings, SettingsError, load_settings
from service.storage.base import redact_url
from service.storage_url import scheme_of


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--version", action="version", version=f"customers-api {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config",
            action="append",
            default=[],
            metavar="FILE",
            help="YAML file layered over config/default.yaml (repeatable, in order)",
        )

    serve = commands.add_parser("serve", help="run the HTTP API")
    with_config(serve)
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=int, help="overrides server.port")
    serve.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop; auto: uvloop when installed (faster), else asyncio's",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="overrides logging.format: json lines, text, or auto (text on a terminal)",
    )

    token = commands.add_parser("token", help="print a JWT from the local issuer")
    with_config(token)
    token.add_argument("--sub", required=True, type=_non_empty, help="subject (user or client id)")
    token.add_argument("--scope", default="", help='space-separated, e.g. "customers:read"')
    token.add_argument("--roles", default="", help="comma-separated, e.g. support,dpo")
    token.add_argument("--ttl", type=_positive_int, default=3600, help="seconds until expiry")

    from service.storage.admin import add_db_commands, add_pii_commands

    db = commands.add_parser("db", help="operate the customer database (storage.url)")
    with_config(db)
    add_db_commands(db)
    pii = commands.add_parser("pii", help="the keys CPFs are encrypted with (pii in config)")
    with_config(pii)
    add_pii_commands(pii)
    return parser


def _describe(settings: Settings) -> str:
    scheme = scheme_of(settings.storage.url)
    if scheme is not None and scheme.file:
        from service.storage.sqlite_schema import sqlite_path

        where = sqlite_path(settings.storage.url).resolve()
        return f"embedded profile: customers in the SQLite file {where}"
    if scheme is not None and scheme.in_memory:
        return (
            "embedded profile: MongoDB API in memory (mongomock) - data lives in memory "
            "and is lost on exit"
        )
    return f"storage {redact_url(settings.storage.url)}, authz engine {settings.authz.engine}"


async def _serve(app: web.Application, settings: Settings, banner: str) -> None:
    """`web.run_app`, except that a failed start-up also cleans up what had started
    (run_app leaves the contexts that did start, e.g. the HTTP session, unclosed)."""
    host, port = settings.server.host, settings.server.port
    runner = ServiceRunner(
        app, handle_signals=True, access_log_class=AccessLogger, **server_options(settings)
    )
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(banner, flush=True)
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit
    finally:
        await runner.cleanup()


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for `uvloop` (and `auto` when it is installed); None: asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SettingsError("--loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def serve(settings: Settings, loop: str = "auto") -> None:
    from service.app import create_app

    loop_factory = _loop_factory(loop)
    app = create_app(settings)
    host, port = settings.server.host, settings.server.port
    banner = f"customers-api on http://{host}:{port} ({_describe(settings)})"
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(app, settings, banner))
    except (web.GracefulExit, KeyboardInterrupt):
        pass


def token(settings: Settings, args: argparse.Namespace) -> None:
    from service.auth.local_issuer import issue_local_token

    roles = [role for role in args.roles.split(",") if role]
    print(issue_local_token(settings, args.sub, args.scope.split(), roles, args.ttl))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "log_format", None) is not None:
        overrides["logging"] = {"format": args.log_format}
    try:
        settings = load_settings(args.config, overrides=overrides)
        setup_logging(settings.logging.format)
        if args.command == "serve":
            serve(settings, args.loop)
        elif args.command == "db":
            from service.storage.admin import run_db_command

            return run_db_command(settings, args)
        elif args.command == "pii":
            from service.storage.admin import run_pii_command

            return run_pii_command(settings, args)
        else:
            token(settings, args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServiceUnavailable as exc:  # a dependency down at start-up (e.g. MongoDB)
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
