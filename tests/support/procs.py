"""Real service processes on free loopback ports.

Example::

    with ServiceProcess(backend_url="file:///tmp/x") as svc:
        httpx.get(svc.url + "/healthz")
        svc.kill()        # SIGKILL
        svc.start()       # same port, same backend

Waiting is a poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

import httpx

from support.tokens import TokenSet

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.02, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if predicate():
        return
    raise TimeoutError(f"{what} not reached within {timeout} s")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


class ServiceProcess:
    """``leaderelection serve`` in a child process, restartable on the same port."""

    def __init__(
        self,
        backend_url: str,
        *,
        port: int | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.backend_url = backend_url
        self.port = port or free_port()
        self.workers = workers
        self.extra_args = extra_args
        self.env = dict(env or {})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
        env.update(self.env)
        cmd = [
            sys.executable,
            "-m",
            "leaderelection_service.cli",
            "serve",
            "--backend-url",
            self.backend_url,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()  # and close the log: __exit__ does not run when __enter__ raises
            raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.proc.returncode}; log: {self.log_path}"
                )
            try:
                ok = httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False
            # Another test's server may have taken the port between free_port()
            # and our bind; only a listener in our own process group counts.
            return ok and self.listening_here()

        wait_until(up, timeout, what=f"service on {self.url}")

    def listening_here(self) -> bool:
        """True when a process of this service's group holds the listening socket."""
        assert self.proc is not None
        inodes = _listening_inodes(self.port)
        for pid in _group_pids(self.proc.pid):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
        return False

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn and its workers)."""
        self._signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        self._reap()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def _reap(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class OutputLines:
    """A child process whose stdout and stderr lines are collected as they come.

    Example::

        run = OutputLines(["bash", "keep-lease.sh", "job", "me"], env={"PATH": "/usr/bin"})
        wait_until(lambda: "leading" in " ".join(run.lines), 20)
        run.close()
    """

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        stop_reading(self.proc, self._reader)


def stop_reading(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    """Kills ``proc`` if it still runs, reaps it, and lets the thread reading its stdout end."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    reader.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


@contextlib.contextmanager
def secured_service(
    root: Path, **roles: tuple[str, str]
) -> Iterator[tuple[ServiceProcess, TokenSet]]:
    """A file-backed service under ``root`` that admits the tokens of ``roles`` alone.

    ``roles`` as for ``TokenSet.write``: ``name=(role, prefix)``.
    """
    (root / "data").mkdir()
    tokens = TokenSet.write(root / "tokens.json", **roles)
    svc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path)),
        log_path=root / "service.log",
    )
    with svc:
        yield svc, tokens
