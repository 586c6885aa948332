"""Processes the benchmark starts on loopback: the service, the no-op app, etcd.

Example::

    with Service("file:///tmp/leases", workers=2) as svc:
        svc.url                     # http://127.0.0.1:PORT
        svc.usage()                 # CPU seconds and peak RSS of the whole tree

Like ``tests/support/procs.py``: a child in its own process group on a free
port, ready when its health URL answers, stopped by signalling the group.
Readiness is a poll with a deadline. Resource figures come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not ready within {timeout} s")


def http_status(port: int, path: str, method: str = "GET", body: bytes | None = None) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request(method, path, body=body)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mb: float
    processes: int


def _children(pid: int) -> list[int]:
    out = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out.extend(_children(int(child)))
    return out


def tree_usage(pid: int) -> Usage:
    """CPU seconds used so far and the sum of peak RSS of ``pid`` and its descendants."""
    cpu = 0.0
    peak_kb = 0
    pids = _children(pid)
    for p in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime, stime
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb += int(line.split()[1])
    return Usage(cpu, peak_kb / 1024, len(pids))


class Proc:
    """A child process on ``port``, ready when ``GET health`` answers 200."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        port: int,
        health: str,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.cmd = list(cmd)
        self.port = port
        self.health = health
        self.log_path = log
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
        env.update(self.env or {})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.cmd[0]} exited with {self.proc.returncode}; log: {self.log_path}"
                )
            return http_status(self.port, self.health) == 200

        wait_until(up, timeout, what=f"{' '.join(self.cmd[:4])} on port {self.port}")
        return self

    def usage(self) -> Usage:
        return tree_usage(self.pid)

    def send(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.send(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(timeout=15)

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def service(
    backend_url: str,
    *,
    workers: int,
    log: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Proc:
    """``leaderelection serve`` exactly as an operator runs it."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "leaderelection_service.cli", "serve",
        "--backend-url", backend_url, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", *extra,
    ]  # fmt: skip
    return Proc(cmd, port=port, health="/healthz", log=log, env=env)


def noop_app(*, workers: int, log: Path, app: str = "bench.noop_app:app") -> Proc:
    """A ceiling app (``bench.noop_app``, ``bench.bare_app``) under ``serve``'s uvicorn settings."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    return Proc(cmd, port=port, health="/healthz", log=log)
