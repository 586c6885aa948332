"""The chaos run's checker: one leader (I1), fencing (I2) and L1/L2 over the electors' own logs.

Example::

    report = check(intervals, faults, unhealthy, Bounds(term=3, retry=0.5),
                   start=t0, end=t1)
    print(report.table())
    assert report.ok, report.problems

Inputs, all on the host's ``CLOCK_MONOTONIC`` (``time.monotonic()`` in every
process):

- ``intervals``: every leadership interval every elector logged (an elector
  killed while leading ends its interval at the kill);
- ``faults``: what the harness injected, for the table;
- ``unhealthy``: windows in which no healthy candidate could lead: every
  elector was dead, paused, cut off or behind a stopped service replica, or
  the backend was down.

Checks:

- **one leader (I1)** no two intervals of different electors share an instant;
- **fencing (I2)** ordered by start, each term's token is larger than the previous
  one's; an equal token is allowed only for the same elector (it stepped down
  at its own deadline and its next acquire found its own term still current,
  which is the same server term, resumed);
- **L1/L2** every leaderless gap, measured from the later of its start and the
  end of the last unhealthy window inside it, is at most
  ``term + retry + clock_skew_allowance + slack``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from support.elector_proc import Interval, overlaps


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    start: float
    end: float


@dataclass(frozen=True)
class Bounds:
    term: float
    retry: float
    clock_skew_allowance: float = 0.0
    slack: float = 2.0
    """Request latency and process scheduling on a shared, noisy machine."""

    @property
    def gap(self) -> float:
        return self.term + self.retry + self.clock_skew_allowance + self.slack


@dataclass
class Report:
    backend: str
    duration: float
    electors: int
    terms: int
    handoffs: int
    faults: Counter[str]
    overlaps: list[tuple[Interval, Interval]]
    token_errors: list[tuple[Interval, Interval]]
    resumed_terms: int
    longest_gap: float
    longest_healthy_gap: float
    gap_bound: float
    slow_gaps: list[tuple[float, float, float]] = field(default_factory=list)
    """(gap start, gap end, seconds counted) of gaps over the bound."""

    @property
    def ok(self) -> bool:
        return not (self.overlaps or self.token_errors or self.slow_gaps) and self.terms > 0

    @property
    def problems(self) -> list[str]:
        out = [f"one leader (I1) overlap: {a} and {b}" for a, b in self.overlaps]
        out += [f"fencing (I2) token not increasing: {a} then {b}" for a, b in self.token_errors]
        out += [
            f"L1/L2 gap of {counted:.2f} s (bound {self.gap_bound:.2f} s) from {s:.2f} to {e:.2f}"
            for s, e, counted in self.slow_gaps
        ]
        if self.terms == 0:
            out.append("nobody ever led")
        return out

    def rows(self) -> list[tuple[str, str]]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        return [
            ("backend", self.backend),
            ("duration", f"{self.duration:.0f} s"),
            ("electors", str(self.electors)),
            ("terms", str(self.terms)),
            ("handoffs", str(self.handoffs)),
            ("faults", f"{sum(self.faults.values())} ({kinds})"),
            ("overlaps (I1)", str(len(self.overlaps))),
            ("token errors (I2)", str(len(self.token_errors))),
            ("terms resumed with the same token", str(self.resumed_terms)),
            ("longest leaderless gap", f"{self.longest_gap:.2f} s"),
            ("longest gap with a healthy candidate", f"{self.longest_healthy_gap:.2f} s"),
            ("gap bound (L1/L2)", f"{self.gap_bound:.2f} s"),
            ("gaps over the bound", str(len(self.slow_gaps))),
            ("verdict", "PASS" if self.ok else "FAIL"),
        ]

    def table(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def token_errors(intervals: Sequence[Interval]) -> tuple[list[tuple[Interval, Interval]], int]:
    """Pairs of successive terms whose tokens do not increase, and resumed terms."""
    ordered = sorted(intervals, key=lambda i: (i.since, i.until))
    bad: list[tuple[Interval, Interval]] = []
    resumed = 0
    for a, b in itertools.pairwise(ordered):
        if b.token > a.token:
            continue
        if b.token == a.token and b.identity == a.identity:
            resumed += 1
            continue
        bad.append((a, b))
    return bad, resumed


def merge(windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def gaps(intervals: Sequence[Interval], start: float, end: float) -> list[tuple[float, float]]:
    """Leaderless stretches between the first election and ``end``."""
    led = merge([(i.since, i.until) for i in intervals])
    out = [(a[1], b[0]) for a, b in itertools.pairwise(led) if b[0] > a[1]]
    if led and led[-1][1] < end:
        out.append((led[-1][1], end))
    return [(s, e) for s, e in out if e > start]


def counted_from(gap: tuple[float, float], unhealthy: Sequence[tuple[float, float]]) -> float:
    """When the gap began to count: its start, or the end of the last unhealthy window in it."""
    s, e = gap
    begin = s
    for us, ue in merge(unhealthy):
        if us < e and ue > begin:
            begin = max(begin, min(ue, e))
    return begin


def check(
    intervals: Sequence[Interval],
    faults: Sequence[Fault],
    unhealthy: Sequence[tuple[float, float]],
    bounds: Bounds,
    *,
    start: float,
    end: float,
    backend: str = "",
    electors: int = 0,
) -> Report:
    ordered = sorted(intervals, key=lambda i: i.since)
    handoffs = sum(1 for a, b in itertools.pairwise(ordered) if a.identity != b.identity)
    bad_tokens, resumed = token_errors(ordered)
    all_gaps = gaps(ordered, start, end)
    slow: list[tuple[float, float, float]] = []
    longest_healthy = 0.0
    for g in all_gaps:
        counted = g[1] - counted_from(g, unhealthy)
        longest_healthy = max(longest_healthy, counted)
        if counted > bounds.gap:
            slow.append((g[0], g[1], counted))
    return Report(
        backend=backend,
        duration=end - start,
        electors=electors,
        terms=len(ordered),
        handoffs=handoffs,
        faults=Counter(f.kind for f in faults),
        overlaps=overlaps(ordered),
        token_errors=bad_tokens,
        resumed_terms=resumed,
        longest_gap=max((e - s for s, e in all_gaps), default=0.0),
        longest_healthy_gap=longest_healthy,
        gap_bound=bounds.gap,
        slow_gaps=slow,
    )
