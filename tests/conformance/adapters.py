"""The table of conformance adapters, and one adapter process as the suite sees it.

Example::

    argv = Builds(tmp_dir).argv(ADAPTERS["go"])      # built once per module
    proc = AdapterProcess(argv, server=proxy_url, proxy=proxy, key="job", identity="go-0",
                          timing=TIMING, log=tmp_path / "go-0.log", token=writer_token)
    wait_until(lambda: proc.of("elected"), 10)
    proc.terminate()                                  # SIGTERM: release, exit 0
    terms = intervals([proc], end=time.time())        # for support.chaos_check

Every language's adapter takes one command line (``--server --key
--identity --term --renew --retry --token``) and prints one JSON object per
line as things happen (``elected``/``ousting`` with ``fencing_token``,
``error`` with ``message``; each with ``identity`` and ``time``, the wall
clock in seconds). Adding a language is one ``Adapter`` row in ``ADAPTERS``:
how to build it, and the exit status its documentation gives after a
permanent error. A table rather than one test module per language: every
scenario then runs on every adapter, and on their mix, without a copy
drifting.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.elector_proc import Interval
from support.needs import missing
from support.procs import REPO
from support.tcpproxy import TcpProxy


@dataclass(frozen=True)
class Timing:
    term: float
    renew: float
    retry: float

    def flags(self) -> list[str]:
        return ["--term", str(self.term), "--renew", str(self.renew), "--retry", str(self.retry)]


@dataclass(frozen=True)
class Adapter:
    name: str
    short: str
    """Prefix of the identities of its processes (``py-0``, ``go-1``)."""
    refused_status: int
    """Exit status after a permanent error, as the adapter's documentation says."""
    build: Callable[[Path], list[str]]
    """Builds the adapter (files under the given directory) and returns its argv."""


def _python(_: Path) -> list[str]:
    return [sys.executable, str(REPO / "tests" / "conformance" / "elect.py")]


def _go(out: Path) -> list[str]:
    go = shutil.which("go")
    if go is None:
        missing("Go (go)", "`./dev test` installs it with apt-get (apt-get install golang-go)")
    assert go is not None
    env = {
        "PATH": f"{Path(go).resolve().parent}:/usr/bin:/bin",
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",  # standard library only: nothing to download
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
    }
    # The user's build cache (Go's default), so that the standard library is
    # compiled once per machine, not once per run: half a minute on a busy CI
    # machine. Go's cache is safe to share between concurrent builds.
    cache = os.environ.get("XDG_CACHE_HOME") or (
        os.environ.get("HOME") and str(Path(os.environ["HOME"]) / ".cache")
    )
    env["GOCACHE"] = str(Path(cache) / "go-build") if cache else str(out / "go-cache")
    env["HOME"] = os.environ.get("HOME") or str(out)
    env["GOPATH"] = str(out / "go-path")
    binary = out / "go-elect"
    _run([go, "build", "-o", str(binary), "./cmd/elect"], REPO / "client" / "go", env)
    return [str(binary)]


TS_DIR = REPO / "client" / "typescript"


def _typescript(_: Path) -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing(
            "Node.js and npm (node, npm)", "`./dev test` installs them (apt-get install nodejs npm)"
        )
    assert node is not None and npm is not None
    env = {**os.environ, "npm_config_audit": "false", "npm_config_fund": "false"}
    # `npm ci` only when node_modules is not what the lockfile pins (npm keeps
    # its own copy of the lockfile there): a reinstall costs tens of seconds.
    installed = TS_DIR / "node_modules" / ".package-lock.json"
    lock = TS_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _run([npm, "ci"], TS_DIR, env)
    _run([npm, "run", "build"], TS_DIR, env)
    return [node, str(TS_DIR / "dist" / "elect.js")]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"


_TABLE = [
    Adapter("python", "py", 1, _python),
    Adapter("go", "go", 1, _go),
    # Checked at merge: the TypeScript adapter's documented status after a permanent error.
    Adapter("typescript", "ts", 1, _typescript),
]
ADAPTERS = {
    a.name: a for a in _TABLE if a.name != "typescript" or (TS_DIR / "package.json").exists()
}
"""The adapters this checkout has (the TypeScript SDK once ``client/typescript`` exists)."""


class Builds:
    """Each adapter built at most once, into ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._argv: dict[str, list[str]] = {}

    def argv(self, adapter: Adapter) -> list[str]:
        if adapter.name not in self._argv:
            self._argv[adapter.name] = adapter.build(self.out)
        return self._argv[adapter.name]


def check_line(event: dict[str, Any]) -> None:
    """One adapter line against the shared format (a bad line fails the test that reads it)."""
    assert event.get("event") in ("elected", "ousting", "error"), event
    assert isinstance(event.get("identity"), str), event
    assert isinstance(event.get("time"), float | int), event
    if event["event"] == "error":
        assert isinstance(event.get("message"), str), event
    else:
        token = event.get("fencing_token")
        assert isinstance(token, int) and not isinstance(token, bool) and token > 0, event


class AdapterProcess:
    """One adapter process; its stdout lines parsed and checked as they come."""

    def __init__(
        self,
        argv: list[str],
        *,
        server: str,
        proxy: TcpProxy,
        key: str,
        identity: str,
        timing: Timing,
        log: Path,
        token: str = "",
    ) -> None:
        self.identity = identity
        self.proxy = proxy
        self.killed_at: float | None = None
        self._stderr = open(log, "w")  # noqa: SIM115 - closed in close()
        cmd = [*argv, "--server", server, "--key", key, "--identity", identity, *timing.flags()]
        if token:
            cmd += ["--token=" + token]  # a token may begin with "-"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERELECTION_")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
                check_line(event)
            except (ValueError, AssertionError):
                self.bad_lines.append(raw.decode(errors="replace"))
                continue
            self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == kind]

    @property
    def leading(self) -> bool:
        """Its last term event is ``elected``."""
        terms = [e for e in list(self.events) if e["event"] != "error"]
        return bool(terms) and terms[-1]["event"] == "elected"

    def kill(self) -> None:
        """SIGKILL: a crash. Its open term ends now (it can do nothing more)."""
        self.killed_at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def terminate(self) -> int:
        """SIGTERM: a graceful stop. Returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def finish(self, timeout: float = 20) -> int:
        """Waits for the exit and for every line it printed; returns the status."""
        status = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.killed_at = time.time()
            self.proc.kill()
        self.finish()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


def intervals(procs: list[AdapterProcess], end: float) -> list[Interval]:
    """Every term each process reported, on its own times: ``elected`` to ``ousting``.

    A term still open ends when the process was killed, else at ``end``.
    """
    out = []
    for p in procs:
        since: dict[str, Any] | None = None
        for e in list(p.events):
            if e["event"] == "elected":
                since = e
            elif e["event"] == "ousting" and since is not None:
                # The ousting names the term it ends, and follows its elected.
                assert e["fencing_token"] == since["fencing_token"], (since, e)
                out.append(
                    Interval(p.identity, since["fencing_token"], since["time"], e["time"], "")
                )
                since = None
        if since is not None:
            until = p.killed_at if p.killed_at is not None else end
            out.append(Interval(p.identity, since["fencing_token"], since["time"], until, None))
    return out
