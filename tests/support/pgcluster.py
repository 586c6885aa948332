"""A PostgreSQL primary with one streaming standby, from the installed binaries.

Example::

    with StreamingPair.start_new(sync=True) as pair:   # initdb, pg_basebackup -R, start both
        url = pair.url          # postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/postgres
                                #   ?target_session_attrs=read-write
        pair.primary.stop("immediate")                 # the primary crashes
        pair.promote()                                 # pg_ctl promote on the standby

``sync=True`` sets ``synchronous_standby_names = '*'`` on the primary (with
the default ``synchronous_commit = on``) and waits until the standby reports
``sync``; ``sync=False`` leaves replication asynchronous. ``cut_wal_receipt``
stops the standby's walreceiver (``primary_conninfo = ''``), so commits made
afterwards on the primary never reach it: the deterministic way to show what
an asynchronous failover loses. Rejected: ``pg_wal_replay_pause()``, since
promotion replays whatever WAL the standby already received, so nothing is
lost by pausing replay alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from support.procs import free_port, wait_until
from support.sqlservers import PostgresServer, find_pg_bin


def query(server: PostgresServer, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url, autocommit=True, connect_timeout=3) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]  # tests' own constant SQL
        return cur.fetchall() if cur.description else []


class StreamingPair:
    def __init__(self, primary: PostgresServer, standby: PostgresServer) -> None:
        self.primary = primary
        self.standby = standby

    @property
    def url(self) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    @classmethod
    def start_new(cls, *, sync: bool) -> StreamingPair:
        primary = PostgresServer.start_new(fsync=True)
        try:
            standby = cls._base_backup(primary)
        except BaseException:
            primary.destroy()
            raise
        pair = cls(primary, standby)
        try:
            standby.start()
            wait_until(lambda: pair.standbys() == 1, 30, 0.1, "the standby streaming")
            if sync:
                query(primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
                query(primary, "SELECT pg_reload_conf()")
                wait_until(
                    lambda: (
                        query(primary, "SELECT sync_state FROM pg_stat_replication") == [("sync",)]
                    ),
                    30,
                    0.1,
                    "the standby replicating synchronously",
                )
        except BaseException:
            pair.destroy()
            raise
        return pair

    @staticmethod
    def _base_backup(primary: PostgresServer) -> PostgresServer:
        bindir = find_pg_bin()
        assert bindir is not None
        root = Path(tempfile.mkdtemp(prefix="le-pg-standby-"))
        standby = PostgresServer(bindir, root / "data", free_port(), fsync=True)
        if standby._as_postgres:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(
            standby._cmd(
                str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                "-U", "postgres", "-D", str(standby.datadir), "-R", "-X", "stream",
                "-c", "fast", "--no-sync",
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return standby

    def standbys(self, state: str = "streaming") -> int:
        rows = query(
            self.primary, f"SELECT count(*) FROM pg_stat_replication WHERE state = '{state}'"
        )
        return int(rows[0][0])

    def caught_up(self) -> bool:
        """The standby has replayed everything the primary wrote so far."""
        (lsn,) = query(self.primary, "SELECT pg_current_wal_lsn()")[0]
        rows = query(self.standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        return bool(rows[0][0])

    def cut_wal_receipt(self) -> None:
        """Stop the standby's walreceiver: later commits on the primary never reach it."""
        query(self.standby, "ALTER SYSTEM SET primary_conninfo = ''")
        query(self.standby, "SELECT pg_reload_conf()")
        wait_until(
            lambda: (
                query(self.standby, "SELECT count(*) FROM pg_stat_wal_receiver") == [(0,)]
                and query(self.primary, "SELECT count(*) FROM pg_stat_replication") == [(0,)]
            ),
            30,
            0.1,
            "the walreceiver gone",
        )

    def promote(self) -> None:
        subprocess.run(
            self.standby._cmd(
                str(self.standby.bindir / "pg_ctl"), "-D", str(self.standby.datadir), "-w",
                "-t", "30", "promote",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip

    def destroy(self) -> None:
        self.standby.destroy()
        self.primary.destroy()

    def __enter__(self) -> StreamingPair:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()
