"""Backends to benchmark, each a fresh empty store, and why one is unavailable.

Example::

    with backend_url("file", workdir, pg_dsn) as url:
        ...                       # raises NotAvailable("...") when it cannot run

A backend is available when the service registers its URL scheme and what
it needs answers: PostgreSQL at ``--pg-dsn``, the fake-gcs-server emulator.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def backend_url(name: str, workdir: Path, pg_dsn: str) -> Iterator[str]:
    if name == "file":
        d = workdir / f"file-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        yield d.as_uri()
        return
    if name == "postgresql":
        if "postgresql" not in _schemes():
            raise NotAvailable("the service has no postgresql:// backend in this version")
        why = pg_reachable(pg_dsn)
        if why:
            raise NotAvailable(why)
        raise NotAvailable("postgresql backend wiring pending")
    if name == "gcs":
        if "gs" not in _schemes():
            raise NotAvailable("the service has no gs:// backend in this version")
        raise NotAvailable("gcs backend wiring pending")
    raise NotAvailable(f"unknown backend {name!r}")
