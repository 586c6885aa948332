"""Section 3, failover: how long from the leader's end to a new leader.

Example::

    out = run_failover(service_url, trials=20, workdir=tmp)
    out["scenarios"]["crash (SIGKILL)"]["median_ms"]

Two candidates (``bench.elector_proc``, each a ``LeaderElector`` in its own
process, ttl 2 s, renew 0.5 s, retry 0.25 s) campaign for one key. In each
trial the parent ends the leader, reading ``time.monotonic()`` just before
the signal, and the other candidate prints the same clock's reading when its
``on_elected`` fires; the difference is the failover. Then a fresh candidate
replaces the one that ended, and once it campaigns (plus one retry interval,
so that it is in its steady rhythm) the next trial starts.

- crash: SIGKILL; the lease must lapse first (at most ttl after the last
  renew), so the bound is ttl + retry + one request;
- graceful: SIGTERM, the leader releases, the follower's next acquire (at
  most retry later) wins;
- graceful, watch stream: the same with followers waiting on the watch
  stream, so they try at once (needs a client with a ``watch`` option).
"""

from __future__ import annotations

import inspect
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.procs import REPO

TTL, RENEW, RETRY = 2.0, 0.5, 0.25
KEY = "bench-failover"


def unavailable_reason() -> str | None:
    try:
        from leaderelection import LeaderElector
    except ImportError:
        return "the client has no LeaderElector in this version"
    del LeaderElector
    return None


def watch_available() -> bool:
    from leaderelection import LeaderElector

    return "watch" in inspect.signature(LeaderElector).parameters


class Candidate:
    """A child ``bench.elector_proc``; its event lines arrive on ``events``."""

    def __init__(self, url: str, name: str, events: queue.Queue[tuple[str, str, float]],
                 watch: bool, log: Path) -> None:  # fmt: skip
        cmd = [
            sys.executable, "-m", "bench.elector_proc", url, KEY, "--identity", name,
            "--term", str(TTL), "--renew", str(RENEW), "--retry", str(RETRY),
        ]  # fmt: skip
        if watch:
            cmd.append("--watch")
        self.name = name
        self._log = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        self.thread = threading.Thread(target=self._read, args=(events,), daemon=True)
        self.thread.start()

    def _read(self, events: queue.Queue[tuple[str, str, float]]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            what, _, t = line.strip().partition(" ")
            events.put((self.name, what, float(t)))

    def end(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Events:
    """Event lines of every candidate, in arrival order; ``expect`` keeps the others."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self._held: list[tuple[str, str, float]] = []

    def expect(self, what: str, timeout: float, name: str | None = None) -> tuple[str, float]:
        def match(e: tuple[str, str, float]) -> bool:
            return e[1] == what and (name is None or e[0] == name)

        for e in self._held:
            if match(e):
                self._held.remove(e)
                return e[0], e[2]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what!r} event within {timeout} s")
            try:
                e = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if match(e):
                return e[0], e[2]
            self._held.append(e)

    def clear(self) -> None:
        """Forget what happened so far (events of ended candidates)."""
        self._held = [e for e in self._held if e[1] == "campaigning"]


def _scenario(url: str, trials: int, sig: signal.Signals, watch: bool, log: Path) -> list[float]:
    events = Events()
    n = 0

    def spawn() -> Candidate:
        nonlocal n
        n += 1
        c = Candidate(url, f"c{n}", events.queue, watch, log)
        events.expect("campaigning", 30, c.name)
        return c

    cands: dict[str, Candidate] = {}
    out = []
    try:
        for c in (spawn(), spawn()):
            cands[c.name] = c
        leader, _ = events.expect("elected", TTL * 3 + 5)
        for _ in range(trials):
            time.sleep(RETRY + 0.1)  # the follower is in its rhythm, not at a fresh start
            events.clear()
            t0 = time.monotonic()
            cands[leader].end(sig)
            new, t1 = events.expect("elected", TTL * 3 + 5)
            out.append((t1 - t0) * 1000)
            cands.pop(leader).wait()
            c = spawn()
            cands[c.name] = c
            leader = new
    finally:
        for c in cands.values():
            c.end(signal.SIGKILL)
            c.wait()
    return out


def run_failover(url: str, *, trials: int, workdir: Path) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    plan = [
        ("crash (SIGKILL)", signal.SIGKILL, False),
        ("graceful (SIGTERM)", signal.SIGTERM, False),
    ]
    if watch_available():
        plan.append(("graceful, watch stream", signal.SIGTERM, True))
    for name, sig, watch in plan:
        ms = _scenario(url, trials, sig, watch, workdir / "electors.log")
        scenarios[name] = {
            "trials": len(ms),
            "median_ms": round(statistics.median(ms), 1),
            "max_ms": round(max(ms), 1),
            "min_ms": round(min(ms), 1),
            "all_ms": [round(x, 1) for x in ms],
        }
        s = scenarios[name]
        print(
            f"  {name:<24} median {s['median_ms']:7.0f} ms  max {s['max_ms']:7.0f} ms", flush=True
        )
    return {"ttl_s": TTL, "renew_s": RENEW, "retry_s": RETRY, "scenarios": scenarios,
            "watch_stream": watch_available()}  # fmt: skip
