"""Throwaway database servers from the installed binaries, restartable.

Example::

    with PostgresServer.start_new() as pg:      # initdb + pg_ctl start, free port
        url = pg.url                            # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.stop("immediate")                    # crash-like stop (no checkpoint)
        pg.start()                              # same data, same port

    with MariadbServer.start_new() as db:       # mariadb-install-db + mariadbd
        url = db.url                            # mariadb+pymysql://root@127.0.0.1:PORT/test

``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the
``postgres`` user (``runuser``) in a directory that user owns. ``find_*``
return None when the binaries are not installed; the fixtures then call
``needs.missing``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from support.needs import missing
from support.procs import free_port, wait_until


def find_pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def find_mariadbd() -> str | None:
    return (
        shutil.which("mariadbd")
        or shutil.which("mysqld")
        or ("/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    )


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory on a free loopback port."""

    def __init__(self, bindir: Path, datadir: Path, port: int, fsync: bool = True) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.port = port
        self.fsync = fsync
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    @classmethod
    def start_new(cls, fsync: bool = True) -> PostgresServer:
        bindir = find_pg_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL binaries (apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="le-pg-"))
        server = cls(bindir, root / "data", free_port(), fsync)
        if server._as_postgres:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(
            server._cmd(
                str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-sync",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        server.start()
        return server

    def start(self, timeout: float = 30.0) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.datadir} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            self._cmd(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", opts,
                "-l", str(self.datadir.parent / "log"), "-w", "-t", str(int(timeout)), "start",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (like a crash: no shutdown checkpoint)."""
        subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                      "stop"),
            capture_output=True,
        )  # fmt: skip

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


class MariadbServer:
    """A MariaDB server in a temporary directory on a free loopback port."""

    def __init__(self, mariadbd: str, root: Path, port: int) -> None:
        self.mariadbd = mariadbd
        self.root = root
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mariadb+pymysql://root@127.0.0.1:{self.port}/test"

    @classmethod
    def start_new(cls) -> MariadbServer:
        mariadbd = find_mariadbd()
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if mariadbd is None or install is None:
            raise FileNotFoundError("MariaDB binaries (apt-get install mariadb-server)")
        root = Path(tempfile.mkdtemp(prefix="le-mariadb-"))
        subprocess.run(
            [install, "--no-defaults", f"--datadir={root / 'data'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        server = cls(mariadbd, root, free_port())
        server.start()
        return server

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.root / "log", "ab")  # noqa: SIM115 - the server process keeps it
        self.proc = subprocess.Popen(
            [self.mariadbd, "--no-defaults", f"--datadir={self.root / 'data'}",
             f"--socket={self.root / 'sock'}", f"--pid-file={self.root / 'pid'}",
             "--bind-address=127.0.0.1", f"--port={self.port}", "--user=root",
             "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=1"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited; log: {self.root / 'log'}")
            import pymysql

            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
            except pymysql.err.OperationalError:
                return False
            with conn, conn.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS test")
            return True

        wait_until(up, timeout, interval=0.1, what=f"mariadbd on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def destroy(self) -> None:
        self.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MariadbServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


@contextlib.contextmanager
def throwaway_postgres(fsync: bool = True) -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for one test, stopped after; missing() if none starts."""
    try:
        server = PostgresServer.start_new(fsync=fsync)
    except Exception as exc:  # binaries missing, or initdb failed
        missing(
            f"PostgreSQL binaries to start a throwaway server ({exc})", "apt-get install postgresql"
        )
        raise  # missing() skips or fails; this is never reached
    with server:
        yield server
