"""Fixtures for the SQL backends: a fresh table space per test on shared servers.

``postgres_url``, ``sqlite_url`` and ``mysql_url`` each yield the URL of an
empty backend: a new PostgreSQL schema (reached through ``search_path``), a
new SQLite file, a new MariaDB database. The servers come from
``LEADERELECTION_TEST_POSTGRES_URL`` / ``LEADERELECTION_TEST_MYSQL_URL`` when
set, else a throwaway server per test session started from the installed
binaries (``support.sqlservers``). Tests and parallel runs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from support.needs import missing
from support.sqlservers import MariadbServer, PostgresServer

PG_ENV = "LEADERELECTION_TEST_POSTGRES_URL"
MYSQL_ENV = "LEADERELECTION_TEST_MYSQL_URL"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server for the session (the env DSN, or a throwaway one)."""
    if os.environ.get(PG_ENV):
        yield os.environ[PG_ENV]
        return
    try:
        server = PostgresServer.start_new(fsync=False)
    except Exception as exc:  # binaries missing, or initdb failed
        missing(
            f"PostgreSQL ({exc})",
            f"Set {PG_ENV}=postgresql://user@host/db or install the postgresql package.",
        )
    with server:
        yield server.url


def _psycopg_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    u = make_url(url).set(drivername="postgresql")
    return psycopg.connect(u.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    schema = f"le_test_{secrets.token_hex(6)}"
    try:
        conn = _psycopg_connect(postgres_server_url)
    except Exception as exc:
        missing(f"PostgreSQL at {postgres_server_url} ({exc})", f"Start it or set {PG_ENV}.")
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with _psycopg_connect(postgres_server_url) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'leases.db'}"


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """A MariaDB server for the session (the env DSN, or a throwaway one)."""
    if os.environ.get(MYSQL_ENV):
        yield os.environ[MYSQL_ENV]
        return
    try:
        server = MariadbServer.start_new()
    except Exception as exc:
        missing(
            f"MariaDB ({exc})",
            f"Set {MYSQL_ENV}=mariadb+pymysql://root@host/db or install mariadb-server.",
        )
    with server:
        yield server.url


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    import pymysql

    u = make_url(mysql_server_url)
    database = f"le_test_{secrets.token_hex(6)}"

    def admin(sql: str) -> None:
        conn = pymysql.connect(
            host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
            password=u.password or "",
        )  # fmt: skip
        with conn, conn.cursor() as cur:
            cur.execute(sql)

    try:
        admin(f"CREATE DATABASE `{database}`")
    except Exception as exc:
        missing(f"MariaDB at {u.host}:{u.port} ({exc})", f"Start it or set {MYSQL_ENV}.")
    yield u.set(database=database).render_as_string(hide_password=False)
    admin(f"DROP DATABASE `{database}`")
