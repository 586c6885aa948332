"""The ``leaderelection`` command.

Example::

    leaderelection serve                       # file backend in ./leaderelection-data
    leaderelection serve --backend-url postgresql://db/leases --workers 2
    leaderelection openapi > openapi.yaml      # the API contract the app serves
    leaderelection status --prefix cron        # the current leases, as a table
    leaderelection run --key cron -- ./job.sh  # run ./job.sh only while leading "cron"

Each subcommand imports only what it needs: ``serve`` the server libraries,
the client commands ``httpx`` alone.
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
from collections.abc import Sequence
from pathlib import Path

from leaderelection_service import __version__
from leaderelection_service.commands import run, status


def _backend_url(value: str) -> str:
    """A URL as given, or a plain (possibly relative) directory as a file URL."""
    if "://" in value:
        return value
    return Path(value).absolute().as_uri()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from leaderelection_service.settings import Settings, apply_env, env_for

    overrides = {
        "backend_url": args.backend_url,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "ttl_min": args.ttl_min,
        "ttl_max": args.ttl_max,
        "clock_skew_allowance": args.clock_skew_allowance,
        "max_body_bytes": args.max_body_bytes,
        "gcs_timeout": args.gcs_timeout,
        "file_sync": args.file_sync,
        "log_level": args.log_level,
        "auth_file": args.auth_file,
        "insecure": args.insecure,
        "watch_poll_interval": args.watch_poll_interval,
        "metrics_key_labels": args.metrics_key_labels,
        "metrics_refresh_interval": args.metrics_refresh_interval,
        "watch_streams_per_token": args.watch_streams_per_token,
        "sql_table": args.sql_table,
        "sql_schema": args.sql_schema,
        "sql_create_schema": args.sql_create_schema,
        "sql_pool_size": args.sql_pool_size,
    }
    apply_env(env_for(**overrides))  # workers read their settings from the environment
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
    )
    return 0


def _metrics_dir(workers: int) -> None:
    """With several workers, a fresh prometheus multiprocess directory for them to share."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = tempfile.mkdtemp(prefix="leaderelection-metrics-")
    atexit.register(shutil.rmtree, path, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the workers inherit it


def _migrate(args: argparse.Namespace) -> int:
    from leaderelection_service.backends.sql import migrate_url
    from leaderelection_service.registry import redact
    from leaderelection_service.settings import Settings

    try:
        settings = Settings(
            backend_url=args.backend_url,
            sql_table=args.sql_table or Settings.model_fields["sql_table"].default,
            sql_schema=args.sql_schema or "",
        )
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


def _sql_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sql-table", help="SQL: the lease table (leaderelection_leases)")
    parser.add_argument("--sql-schema", help="SQL: the schema holding it (the default schema)")


def _openapi(args: argparse.Namespace) -> int:
    from leaderelection_service.openapi import render

    sys.stdout.write(render())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderelection", description="Lease coordination for leader election."
    )
    parser.add_argument("--version", action="version", version=f"leaderelection {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the lease service")
    serve.add_argument(
        "--backend-url",
        type=_backend_url,
        help="file:///dir (or a plain directory), postgresql://…, sqlite:///…, gs://bucket/prefix",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    serve.add_argument("--ttl-min", type=float, help="smallest ttl accepted, seconds (0.5)")
    serve.add_argument("--ttl-max", type=float, help="largest ttl accepted, seconds (3600)")
    serve.add_argument(
        "--clock-skew-allowance", type=float, help="seconds added before a takeover (0)"
    )
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (16384)")
    serve.add_argument(
        "--gcs-timeout", type=float, help="gs://: seconds per GCS call, retries included (5)"
    )
    serve.add_argument(
        "--file-sync",
        choices=["filesystem", "file"],
        help="file://: one syncfs per batch of writes, or fdatasync per file (filesystem)",
    )
    serve.add_argument("--log-level", help="debug, info, warning, error")
    serve.add_argument(
        "--auth-file",
        type=lambda v: str(Path(v).absolute()),
        help="JSON list of API tokens (see README, Authentication); default: no authentication",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --host without --auth-file",
    )
    serve.add_argument(
        "--watch-poll-interval",
        type=float,
        help="seconds between backend reads for watch streams without push (1.0)",
    )
    serve.add_argument(
        "--watch-streams-per-token",
        type=int,
        help="open watch streams per API token, or per client address without auth (256)",
    )
    serve.add_argument(
        "--metrics-key-labels", type=int, help="keys named in the transitions metric (50)"
    )
    serve.add_argument(
        "--metrics-refresh-interval",
        type=float,
        help="seconds between background listings for the lease gauges of /metrics (15)",
    )
    _sql_flags(serve)
    serve.add_argument(
        "--sql-create-schema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SQL: create missing tables at start (default yes; --no-sql-create-schema "
        "where the service may not run DDL)",
    )
    serve.add_argument("--sql-pool-size", type=int, help="SQL: connections per worker (10)")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser(
        "migrate", help="create or upgrade the SQL backend's tables, then exit"
    )
    migrate.add_argument(
        "--backend-url", required=True, help="postgresql://…, sqlite:///…, mariadb+pymysql://…"
    )
    _sql_flags(migrate)
    migrate.set_defaults(func=_migrate)

    openapi = sub.add_parser("openapi", help="print the OpenAPI document the app serves (YAML)")
    openapi.set_defaults(func=_openapi)
    status.add_arguments(
        sub.add_parser("status", help="show the current leases (table, --json, --watch)")
    )
    run.add_arguments(
        sub.add_parser(
            "run",
            help="run a command only while this process leads a key",
            usage="leaderelection run --key K [--ttl S] [--server URL] [--token T] -- CMD ARGS…",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
