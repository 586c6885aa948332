"""The chaos run's stage: a backend, the service replicas in front of it, and
the paths between them that faults can break.

Example::

    stage = Stage("postgres", workdir).start()
    stage.replicas[0].pause()              # SIGSTOP one service replica
    stage.backend_proxies[1].hold()        # replica 1's path to PostgreSQL: a black hole
    stage.restart_backend()                # PostgreSQL immediate restart
    stage.close()

Per backend: ``file`` is two services on one directory, which is a small tmpfs
of its own when ``full_disk`` is wanted (``stage.disk``, for ``tmpfs.fill``);
``postgres`` a throwaway PostgreSQL server, ``mysql`` a throwaway MariaDB
server, ``sqlite`` one database file, ``gcs`` a fake-gcs-server in filesystem
mode; two replicas each. A server backend is reached by each replica through
its own ``TcpProxy`` (``backend_proxies[i]``), so one replica's path can fail
while the other's works, as a partition between one host and the database.

The emulator's ``restart_backend`` (SIGTERM and start) can tear a write in
flight, leaving an object without metadata that it then reads as absent, so
the key's fencing token starts again at 1; real GCS writes atomically. Each
restart looks for such objects while the emulator is down and lists them in
``stage.torn_writes``, and the checker counts the token resets they explain
apart from fencing (I2) errors (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from support.procs import ServiceProcess
from support.tcpproxy import TcpProxy

DISK_KIB = 4096
"""The file backend's tmpfs: room for a few hundred keys, and quick to fill."""


class Stage:
    def __init__(self, backend: str, workdir: Path, *, full_disk: bool = False) -> None:
        self.backend = backend
        self.workdir = workdir
        self.want_disk = full_disk and backend == "file"
        self.replicas: list[ServiceProcess] = []
        self.backend_proxies: list[TcpProxy] = []
        self.disk: Path | None = None
        self.restart_backend: Callable[[], None] | None = None
        self.torn_writes: list[tuple[float, str]] = []
        """(when the stop began, key): gcs objects a ``restart_backend`` left without
        metadata, which the emulator then reads as absent (its own fault, not GCS's)."""
        self._stack = contextlib.ExitStack()

    def offers(self, kind: str) -> bool:
        """Whether this backend has what the fault ``kind`` acts on."""
        if kind == "restart_backend":
            return self.backend in ("postgres", "mysql", "gcs")
        if kind == "backend_blackhole":
            return self.backend in ("postgres", "mysql", "gcs")
        if kind == "full_disk":
            return self.want_disk
        return True

    def start(self) -> Stage:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # per replica: its backend URL and environment, given the backend's port
        via: Callable[[int], tuple[str, dict[str, str]]]
        upstream = 0
        if self.backend == "file":
            data = self.workdir / "data"
            if self.want_disk:
                from support.tmpfs import small_tmpfs

                self.disk = self._stack.enter_context(
                    small_tmpfs(self.workdir / "disk", size_kib=DISK_KIB)
                )
                data = self.disk / "data"
            data.mkdir(exist_ok=True)
            via = lambda port: (data.as_uri(), {})  # noqa: E731
        elif self.backend == "postgres":
            from support.sqlservers import PostgresServer

            pg = self._stack.enter_context(PostgresServer.start_new())
            upstream = pg.port
            via = lambda port: (pg.url.replace(f":{pg.port}/", f":{port}/"), {})  # noqa: E731
            self.restart_backend = lambda: pg.restart("immediate")
        elif self.backend == "gcs":
            from support.gcs import GcsEmulator

            emu = GcsEmulator(root=self.workdir / "gcs", log_path=self.workdir / "gcs.log")
            self._stack.enter_context(emu)  # starts it
            bucket = emu.create_bucket("chaos")
            upstream = emu.port

            def via(port: int) -> tuple[str, dict[str, str]]:
                env = {**emu.env(), "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
                return f"gs://{bucket}/leases", env

            def restart() -> None:
                began = time.monotonic()
                emu.stop()
                # still files now: any write the stop tore (see GcsEmulator.torn_objects)
                for name in emu.torn_objects(bucket):
                    self.torn_writes.append((began, name.removeprefix("leases/")))
                emu.start()

            self.restart_backend = restart
        elif self.backend == "sqlite":
            # two replicas on one database file (SQLite's own locking between
            # processes); there is no server to restart or to cut off
            url = f"sqlite:///{self.workdir / 'leases.db'}"
            via = lambda port: (url, {})  # noqa: E731
        elif self.backend == "mysql":
            from support.sqlservers import MariadbServer

            maria = self._stack.enter_context(MariadbServer.start_new())
            upstream = maria.port
            via = lambda port: (maria.url.replace(f":{maria.port}/", f":{port}/"), {})  # noqa: E731

            def crash_and_start() -> None:
                maria.stop()  # SIGKILL: no clean shutdown
                maria.start()

            self.restart_backend = crash_and_start
        else:
            raise ValueError(f"unknown backend {self.backend!r}")
        for i in range(2):
            port = 0
            if upstream:
                proxy = self._stack.enter_context(TcpProxy(upstream))
                self.backend_proxies.append(proxy)
                port = proxy.port
            url, env = via(port)
            svc = ServiceProcess(url, env=env, log_path=self.workdir / f"service-{i}.log")
            self.replicas.append(self._stack.enter_context(svc))
        return self

    def close(self) -> None:
        self._stack.close()
