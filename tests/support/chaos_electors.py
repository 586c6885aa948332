"""The chaos run's elector processes: who stands, who was retired, and when
each could not lead.

Example::

    roster = Roster(stage, workdir, key_names(8), term=3.0, renew=0.75, retry=0.5)
    c = roster.spawn()                     # elector process e1, behind its own TcpProxy
    c.proxy.cut(); ...; c.down.append((t, time.monotonic()))
    roster.retire(c)                       # SIGKILLed or stopped: no candidate from now on
    intervals = roster.intervals()         # every term any of them logged
    excused = roster.no_candidate(t0)      # windows in which no candidate was healthy

Each elector process (``support/elector_proc.py``) runs one elector per key,
for every key of the run; it reaches its service replica through a
``TcpProxy`` of its own, so its network can be cut alone. Processes alternate
between the sync and the async elector, and between the replicas.

``lock`` guards the roster, and the fault injectors (``chaos_faults.Faults``)
take it too for the targets they hold: a candidate taken for a fault is then
one still standing. Rejected: a lock per module (a fault could take a
candidate another fault had just retired).
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from support.chaos_stage import Stage
from support.elector_proc import ElectorProcess, Interval
from support.tcpproxy import TcpProxy


def key_names(count: int) -> list[str]:
    return ["chaos"] if count == 1 else [f"k{i:03d}" for i in range(count)]


@dataclass
class Candidate:
    elector: ElectorProcess
    proxy: TcpProxy
    replica: int
    down: list[tuple[float, float]] = field(default_factory=list)
    """When this candidate could not lead: paused, cut off, its replica down."""
    born: float = field(default_factory=time.monotonic)
    gone: float = float("inf")
    """From SIGKILL or SIGTERM on, it is no candidate."""

    def started(self) -> float:
        """When its process began electing (it imports for seconds under load)."""
        return next(
            (e["mono"] for e in self.elector.events() if e["event"] == "started"), float("inf")
        )

    def healthy(self, t: float, started: float) -> bool:
        """Running its electors at ``t`` (started, not yet ended) and not down."""
        if not max(self.born, started) <= t < self.gone:
            return False
        return not any(s <= t <= e for s, e in self.down)


class Roster:
    def __init__(
        self,
        stage: Stage,
        workdir: Path,
        keys: list[str],
        *,
        term: float,
        renew: float,
        retry: float,
        limits: dict[str, int] | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.stage = stage
        self.limits = limits or {}
        """Semaphore keys and their limits (every other key: one leader)."""
        self.workdir = workdir
        self.keys = keys
        self.term, self.renew, self.retry = term, renew, retry
        self.log = log
        self.lock = threading.Lock()
        self.candidates: list[Candidate] = []
        self.retired: list[Candidate] = []
        self._serial = 0

    def spawn(self) -> Candidate:
        with self.lock:
            self._serial += 1
            serial = self._serial
        replica = serial % len(self.stage.replicas)
        proxy = TcpProxy(self.stage.replicas[replica].port).start()
        identity = f"e{serial}"
        elector = ElectorProcess(
            f"http://127.0.0.1:{proxy.port}", self.keys, identity,
            self.workdir / f"{identity}.jsonl",
            term=self.term, renew=self.renew, retry=self.retry,
            kind="async" if serial % 2 else "sync", limits=self.limits,
        ).start()  # fmt: skip
        c = Candidate(elector, proxy, replica)
        with self.lock:
            self.candidates.append(c)
        return c

    def retire(self, c: Candidate) -> None:
        with self.lock:
            self.candidates.remove(c)
            self.retired.append(c)

    def stop(self, c: Candidate) -> None:
        """SIGTERM; one that does not stop within a minute is SIGKILLed, its terms
        ending then (so the checker still holds them to I1)."""
        try:
            c.elector.stop(timeout=60)
        except subprocess.TimeoutExpired:
            c.elector.killed_at = time.monotonic()
            self.log(f"{c.elector.identity} did not stop within 60 s: killed")

    def stop_all(self) -> None:
        """Every standing candidate stopped at once (each steps down and releases)."""
        stopping = [threading.Thread(target=self.stop, args=(c,)) for c in self.candidates]
        for t in stopping:
            t.start()
        for t in stopping:
            t.join()

    def close(self) -> None:
        """Every process still running SIGKILLed (resumed first), every proxy closed."""
        for c in self.candidates + self.retired:
            with contextlib.suppress(Exception):
                if c.elector.proc is not None and c.elector.proc.poll() is None:
                    c.elector.resume()
                    c.elector.proc.kill()
                    c.elector.proc.wait(10)
            c.proxy.close()

    def every_key_led(self) -> bool:
        led = set().union(*(c.elector.leading_keys for c in self.candidates))
        return led >= set(self.keys)

    def intervals(self) -> list[Interval]:
        out: list[Interval] = []
        for c in self.candidates + self.retired:
            out += c.elector.intervals()
        return out

    def no_candidate(self, t0: float) -> list[tuple[float, float]]:
        """Windows since ``t0`` in which no candidate was healthy (all dead, starting or down)."""
        everyone = self.candidates + self.retired
        started = [c.started() for c in everyone]
        points = {t0, *started}
        for c in everyone:
            points.update([c.born, c.gone])
            points.update(t for w in c.down for t in w)
        ordered = sorted(t for t in points if t != float("inf"))
        out = []
        for a, b in itertools.pairwise(ordered):
            mid = (a + b) / 2
            if not any(c.healthy(mid, s) for c, s in zip(everyone, started, strict=True)):
                out.append((a, b))
        return out
