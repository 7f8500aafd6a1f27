"""CLI: `python -m service serve|token|db|pii|events`. Parses arguments, loads settings."""
# The module docstring is for developers; DESCRIPTION is what `--help` shows users.

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from service import __version__
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


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of processes or auto") from None


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


DESCRIPTION = """\
Customer registry API: validated, standardized customer records behind JWT authentication
and Rego policies. `serve` runs the HTTP API; `token` prints a token from the local issuer;
`db` and `pii` operate the database and the CPF encryption keys; `events` the webhook
deliveries (replay, status). Every command reads
config/default.yaml, then each --config FILE in order (before or after the command), then
CUSTOMERS__SECTION__KEY environment variables."""


def _prog() -> str:
    """The name it was run by: `customers-api` (the installed script) or `python -m service`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m service" if name in ("", "-c", "__main__.py") else name


def _take_configs(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(every `--config FILE` in order, the other arguments): accepted at any position."""
    configs: list[str] = []
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--config":
            value = next(items, None)
            if value is None:
                raise SystemExit(f"{_prog()}: error: --config needs a FILE")
            configs.append(value)
        elif item.startswith("--config="):
            configs.append(item.removeprefix("--config="))
        else:
            rest.append(item)
    return configs, rest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(), description=DESCRIPTION)
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
        "--workers",
        type=_workers,
        help="overrides server.workers: processes serving the port, or auto (one per core)",
    )
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

    from service.storage.admin import add_db_commands
    from service.storage.pii_commands import add_pii_commands

    db = commands.add_parser("db", help="operate the customer database (storage.url)")
    with_config(db)
    add_db_commands(db)
    pii = commands.add_parser("pii", help="the keys CPFs are encrypted with (pii in config)")
    with_config(pii)
    add_pii_commands(pii)

    from service.events.cli import add_events_commands

    events = commands.add_parser("events", help="webhook deliveries (events.webhooks in config)")
    with_config(events)
    add_events_commands(events)
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


def serve(settings: Settings, loop: str = "auto") -> int:
    from service import runtime

    loop_factory = _loop_factory(loop)
    host, port, workers = settings.server.host, settings.server.port, settings.server.workers
    processes = f", {workers} workers" if workers > 1 else ""
    banner = f"customers-api on http://{host}:{port} ({_describe(settings)}{processes})"

    def announce() -> None:
        print(banner, flush=True)

    try:
        if workers > 1:
            return runtime.Supervisor(settings, loop_factory, workers, announce).run()
        runtime.run(settings, loop_factory, on_ready=announce)
    except KeyboardInterrupt:  # Ctrl-C before the event loop took the signal over
        pass
    return 0


def token(settings: Settings, args: argparse.Namespace) -> None:
    from service.auth.local_issuer import issue_local_token

    roles = [role for role in args.roles.split(",") if role]
    print(issue_local_token(settings, args.sub, args.scope.split(), roles, args.ttl))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `db export | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 1


def _main(argv: Sequence[str]) -> int:
    configs, rest = _take_configs(argv)
    args = _parser().parse_args(rest)
    args.config = configs
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "workers", None) is not None:
        overrides.setdefault("server", {})["workers"] = args.workers
    if getattr(args, "log_format", None) is not None:
        overrides["logging"] = {"format": args.log_format}
    try:
        settings = load_settings(args.config, overrides=overrides)
        setup_logging(settings.logging.format)
        if args.command == "serve":
            return serve(settings, args.loop)
        elif args.command == "db":
            from service.storage.admin import run_db_command

            scheme = scheme_of(settings.storage.url)
            if scheme is not None and scheme.in_memory:
                raise SettingsError(
                    "storage.url is mongomock:// (in memory, inside one process): a db command "
                    "would work on an empty store of its own; name the server's storage.url"
                )

            return run_db_command(settings, args)
        elif args.command == "events":
            from service.events.cli import run_events_command

            return run_events_command(settings, args)
        elif args.command == "pii":
            from service.storage.pii_commands import run_pii_command

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
