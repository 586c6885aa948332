"""The ``leaderelection`` command.

Example::

    leaderelection serve                       # file backend in ./leaderelection-data
    leaderelection serve --backend-url postgresql://db/leases --workers 2
    leaderelection openapi > openapi.yaml      # the API contract the app serves
    leaderelection status --prefix cron        # the current leases, as a table
    leaderelection run --key cron -- ./job.sh  # run ./job.sh only while leading "cron"

Each subcommand imports only what it needs: ``serve`` the server libraries,
the client commands ``httpx`` alone. Where only the client is installed
(``pip install leaderelection``, no ``server`` extra), ``serve``, ``migrate``
and ``openapi`` say so in one line and exit 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leaderelection_service import __version__
from leaderelection_service.commands import delete, revoke, run, status

if TYPE_CHECKING:
    from leaderelection_service.connections import Budget
    from leaderelection_service.settings import Settings

SERVER_COMMANDS = frozenset({"serve", "migrate", "openapi"})
"""The subcommands that need the ``server`` extra."""


def _needs_server(command: str, exc: ModuleNotFoundError) -> str:
    """The one line for a server command run where the server libraries are missing."""
    return (
        f"leaderelection {command}: the server libraries are not installed "
        f"(no module named {exc.name!r}); install them with: "
        "pip install 'leaderelection[server]'"
    )


def _backend_url(value: str) -> str:
    """A URL as given, or a plain (possibly relative) directory as a file URL."""
    if "://" in value:
        return value
    return Path(value).absolute().as_uri()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from leaderelection_service.flags import given
    from leaderelection_service.settings import Settings, apply_env, env_for

    apply_env(env_for(**given(args)))  # workers read their settings from the environment
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"leaderelection: bad configuration: {exc}", file=sys.stderr)
        return 2
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Our own loggers go through uvicorn's handler, in every worker process.
    log_config["loggers"]["leaderelection"] = {
        "handlers": ["default"],
        "level": settings.log_level.upper(),
        "propagate": False,
    }
    logging.config.dictConfig(log_config)
    try:
        from leaderelection_service.registry import open_backend

        open_backend(settings.backend_url, settings)  # fail fast on a bad URL
    except ValueError as exc:
        print(f"leaderelection: bad backend URL: {exc}", file=sys.stderr)
        return 2
    try:
        from leaderelection_service.auth import TokenTable, check_exposure

        tokens = TokenTable.load(settings.auth_file) if settings.auth_file else None
        check_exposure(settings.host, tokens=tokens, insecure=settings.insecure)
    except ValueError as exc:
        print(f"leaderelection: {exc}", file=sys.stderr)
        return 2
    try:
        budget = _connection_budget(settings)
    except ValueError as exc:
        print(f"leaderelection: bad configuration: {exc}", file=sys.stderr)
        return 2
    _metrics_dir(settings.workers)
    uvicorn.run(
        "leaderelection_service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config,
        access_log=False,  # off: no request lines in the log
        timeout_graceful_shutdown=5,
        # The front door's limits: see http_protocol and docs/security.md.
        http="leaderelection_service.http_protocol:GuardedHttpToolsProtocol",
        ws="none",  # no WebSocket route: an Upgrade is an ordinary request
        timeout_keep_alive=settings.idle_timeout,  # type: ignore[arg-type]  # a float works
        backlog=budget.backlog,
    )
    return 0


def _connection_budget(settings: Settings) -> Budget:
    """Raise the open file limit to the hard one; the connection cap and backlog that fit.

    The workers inherit the limit and read the cap from the environment.
    """
    from leaderelection_service.connections import connection_budget
    from leaderelection_service.settings import apply_env, env_for

    soft = _raise_file_limit()
    explicit = "max_connections" in settings.model_fields_set
    budget = connection_budget(soft, settings.max_connections, explicit=explicit)
    if budget.clamped:
        logging.getLogger("leaderelection").warning(
            "max_connections lowered from %d to %d per worker to fit the open file limit (%d)",
            settings.max_connections,
            budget.cap,
            soft,
        )
    settings.max_connections = budget.cap
    apply_env(env_for(max_connections=budget.cap))
    return budget


def _raise_file_limit() -> int:
    """Set RLIMIT_NOFILE's soft limit to the hard one (at most what the system allows)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
            pass
    return soft


def _metrics_dir(workers: int) -> None:
    """With several workers, a fresh prometheus multiprocess directory for them to share."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = tempfile.mkdtemp(prefix="leaderelection-metrics-")
    atexit.register(shutil.rmtree, path, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the workers inherit it


def _migrate(args: argparse.Namespace) -> int:
    from leaderelection_service.backends.sql import migrate_url
    from leaderelection_service.flags import given
    from leaderelection_service.registry import redact
    from leaderelection_service.settings import Settings

    try:
        settings = Settings(**given(args))  # the flags, then LEADERELECTION_SQL_*
    except ValueError as exc:
        print(f"leaderelection: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        before, after = migrate_url(
            settings.backend_url, table=settings.sql_table, schema=settings.sql_schema or None
        )
    except Exception as exc:  # a line for the operator, no stack trace
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"leaderelection: migrate failed: {reason}", file=sys.stderr)
        return 1
    where = f"{settings.sql_schema + '.' if settings.sql_schema else ''}{settings.sql_table}"
    state = "already current" if before == after else f"upgraded from version {before}"
    print(f"{redact(settings.backend_url)}: table {where} at schema version {after} ({state})")
    return 0


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    from leaderelection_service.flags import add_flags

    add_flags(parser, convert={"backend_url": _backend_url})


def _migrate_flags(parser: argparse.ArgumentParser) -> None:
    from leaderelection_service.flags import add_flags

    parser.add_argument(
        "--backend-url", required=True, help="postgresql://…, sqlite:///…, mariadb+pymysql://…"
    )
    add_flags(parser, ["sql_table", "sql_schema"])


class _Deferred(argparse.ArgumentParser):
    """A subcommand parser whose flags are added when it is first used.

    ``serve`` and ``migrate`` take their flags from ``Settings`` (pydantic);
    deferring them keeps ``status`` and ``run`` free of server libraries.
    """

    def __init__(
        self, *args: Any, flags: Callable[[argparse.ArgumentParser], None] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._flags = flags

    def _ready(self) -> None:
        if self._flags is not None:
            add, self._flags = self._flags, None
            try:
                add(self)
            except ModuleNotFoundError as exc:  # the flags come from Settings (pydantic)
                self.exit(2, _needs_server(self.prog.split()[-1], exc) + "\n")

    def parse_known_args(self, *args: Any, **kw: Any) -> Any:
        self._ready()
        return super().parse_known_args(*args, **kw)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()


def _openapi(args: argparse.Namespace) -> int:
    from leaderelection_service.openapi import render

    sys.stdout.write(render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderelection", description="Lease coordination for leader election."
    )
    parser.add_argument("--version", action="version", version=f"leaderelection {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Deferred)

    serve = sub.add_parser("serve", help="run the lease service", flags=_serve_flags)
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the SQL backend's tables, then exit",
        flags=_migrate_flags,
    )
    migrate.set_defaults(func=_migrate)

    openapi = sub.add_parser("openapi", help="print the OpenAPI document the app serves (YAML)")
    openapi.set_defaults(func=_openapi)
    status.add_arguments(
        sub.add_parser("status", help="show the current leases (table, --json, --watch)")
    )
    revoke.add_arguments(
        sub.add_parser("revoke", help="end a lease's current term now, whoever holds it (admin)")
    )
    delete.add_arguments(
        sub.add_parser(
            "delete",
            help="delete a key that is not held, or keys whose last term ended long ago (admin)",
            usage=(
                "leaderelection delete KEY | --older-than DURATION --prefix P [--dry-run]"
                " [--server URL] [--token T]"
            ),
        )
    )
    run.add_arguments(
        sub.add_parser(
            "run",
            help="run a command only while this process leads a key",
            usage=(
                "leaderelection run --key K [--ttl S] [--no-wait] [--timeout D] [--hold-after D]"
                " [--server URL] [--token T] -- CMD ARGS…"
            ),
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ModuleNotFoundError as exc:
        if args.command not in SERVER_COMMANDS:
            raise  # a client command needs httpx alone: this is a bug, not an install
        print(_needs_server(args.command, exc), file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
