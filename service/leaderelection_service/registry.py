"""Backends chosen by URL, registered in one place.

Example::

    backend = open_backend("file:///var/lib/leaderelection")
    backend = open_backend("postgresql://leases@db/leases")

| scheme                                   | backend                        |
|------------------------------------------|--------------------------------|
| ``file``                                 | ``backends.file.FileStore``    |
| ``memory``                               | ``backends.memory`` (tests)    |
| ``gs``                                   | ``backends.gcs.GcsStore``      |
| ``postgresql``, ``postgresql+psycopg``   | ``backends.sql.SqlLeases``     |
| ``sqlite``, ``mariadb+pymysql``          | ``backends.sql.SqlLeases``     |

Each backend's client library is imported only when its scheme is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from leaderelection_service.lease_rules import CasLeases
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend


def _file(url: str, settings: Settings) -> LeaseBackend:
    from leaderelection_service.backends.file import FileStore

    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URL must name a local path, not host {parts.netloc!r}: {url}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"file URL must hold an absolute path (file:///dir): {url}")
    store = FileStore(path, sync=settings.file_sync)
    return CasLeases(store, clock_skew_allowance=settings.clock_skew_allowance)


def _memory(url: str, settings: Settings) -> LeaseBackend:
    from leaderelection_service.backends.memory import MemoryStore

    return CasLeases(MemoryStore(), clock_skew_allowance=settings.clock_skew_allowance)


def _gcs(url: str, settings: Settings) -> LeaseBackend:
    from leaderelection_service.backends.gcs import GcsStore

    store = GcsStore.from_url(url, timeout=settings.gcs_timeout)
    return CasLeases(store, clock_skew_allowance=settings.clock_skew_allowance)


def _sql(url: str, settings: Settings) -> LeaseBackend:
    from leaderelection_service.backends.sql import SqlLeases

    return SqlLeases(
        url,
        table=settings.sql_table,
        schema=settings.sql_schema or None,
        create_schema=settings.sql_create_schema,
        clock_skew_allowance=settings.clock_skew_allowance,
        pool_size=settings.sql_pool_size,
    )


SQL_SCHEMES = (
    "postgresql",
    "postgresql+psycopg",
    "postgres",
    "sqlite",
    "mariadb",
    "mariadb+pymysql",
    "mysql",
    "mysql+pymysql",
)

_FACTORIES: dict[str, Callable[[str, Settings], LeaseBackend]] = {
    "file": _file,
    "memory": _memory,
    "gs": _gcs,
    **{scheme: _sql for scheme in SQL_SCHEMES},
}


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def open_backend(url: str, settings: Settings | None = None) -> LeaseBackend:
    """The backend for ``url``; ``ValueError`` names what is wrong with it."""
    settings = settings or Settings(backend_url=url)
    scheme = urlsplit(url).scheme.lower()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise ValueError(
            f"unknown backend scheme {scheme!r} in {redact(url)}; "
            f"use one of: {', '.join(schemes())}"
        )
    return factory(url, settings)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
