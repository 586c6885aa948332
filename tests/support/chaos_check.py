"""The chaos run's checker: one leader (I1), fencing (I2) and L1/L2 over the electors' own logs,
key by key.

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

Checks, each within one key (a process may lead many keys):

- **one leader (I1)** no two intervals of different electors share an instant, each
  interval as its own elector saw it (its own monotonic deadline);
- **fencing (I2)** ordered by start, each term's token is larger than the previous
  one's; an equal token is allowed only for the same elector (it stepped down
  at its own deadline and its next acquire found its own term still current,
  which is the same server term, resumed). One exception, counted on its own
  line and never silently: ``torn_writes`` lists (time, key) where the harness
  found, while the GCS emulator was stopped, the key's object left without
  metadata by the stop (the emulator reads it as absent and the counter starts
  again; real GCS cannot do this). The one pair of terms of that key that
  straddles the time is an emulator reset, not an I2 error; every later pair is
  checked as usual, so the new count must rise on its own;
- **semaphore keys** (``limits``: a key and its N): at no instant do more than
  N electors hold a slot (the most seen is reported beside the limit, in place
  of I1's overlaps); fencing there is that no two electors were ever given
  one token, and each elector's tokens increase (slots are granted
  concurrently, so the order in which electors logged them proves nothing);
- **L1/L2** every leaderless gap, measured from the later of its start and the
  end of the last unhealthy window inside it, is at most
  ``term + retry + clock_skew_allowance + slack``.

The checker reads only what the electors logged and what the harness did; it
calls nothing of the service or the client, so a bug there cannot hide itself
here. ``by_kind`` splits the figures by fault kind: a term, handoff, overlap or
token error counts for a kind when it began while a fault of that kind was on
or within one gap bound after it ended (faults overlap, so a row may share
events with another); "quiet" is what began outside every fault.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from support.elector_proc import Interval, by_key, overlaps


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
    keys: int = 1
    most_holders: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Semaphore keys: (most electors holding a slot at one instant, the limit)."""
    by_kind: list[KindRow] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    """Problems found by the harness's own probes (a full disk that did not refuse, ...)."""
    torn_writes: list[tuple[float, str]] = field(default_factory=list)
    """(time, key) of GCS emulator writes torn by its restart (see the module doc)."""
    emulator_resets: list[tuple[Interval, Interval]] = field(default_factory=list)
    """Token decreases explained by a torn emulator write: reported, not I2 errors."""

    @property
    def ok(self) -> bool:
        bad = self.overlaps or self.token_errors or self.slow_gaps or self.extra
        return not bad and self.terms > 0 and not self.over_limit

    @property
    def over_limit(self) -> list[str]:
        return [k for k, (most, limit) in self.most_holders.items() if most > limit]

    @property
    def problems(self) -> list[str]:
        out = [f"one leader (I1) overlap: {a} and {b}" for a, b in self.overlaps]
        out += [f"fencing (I2) token not increasing: {a} then {b}" for a, b in self.token_errors]
        out += [
            f"L1/L2 gap of {counted:.2f} s (bound {self.gap_bound:.2f} s) from {s:.2f} to {e:.2f}"
            for s, e, counted in self.slow_gaps
        ]
        out += [
            f"semaphore {k}: {self.most_holders[k][0]} held a slot at once, "
            f"limit {self.most_holders[k][1]}"
            for k in self.over_limit
        ]
        if self.terms == 0:
            out.append("nobody ever led")
        return out + self.extra

    def rows(self) -> list[tuple[str, str]]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        return [
            ("backend", self.backend),
            ("duration", f"{self.duration:.0f} s"),
            ("electors", str(self.electors)),
            ("keys", str(self.keys)),
            ("terms", str(self.terms)),
            ("handoffs", str(self.handoffs)),
            ("faults", f"{sum(self.faults.values())} ({kinds})"),
            ("overlaps (I1)", str(len(self.overlaps))),
            *(
                (f"most holders of semaphore {k} at once", f"{most} (limit {limit})")
                for k, (most, limit) in sorted(self.most_holders.items())
            ),
            ("token errors (I2)", str(len(self.token_errors))),
            ("emulator writes torn by a restart", str(len(self.torn_writes))),
            ("token resets they explain (not I2)", str(len(self.emulator_resets))),
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

    def kind_table(self, header: bool = True) -> str:
        """Markdown rows: backend, fault kind, terms, handoffs, faults, overlaps, token
        errors, longest gap with a healthy candidate."""
        out = []
        if header:
            out += [
                "| backend | fault kind | terms | handoffs | faults | overlaps | "
                "token errors | longest gap (s) |",
                "|---|---|--:|--:|--:|--:|--:|--:|",
            ]
        for r in self.by_kind:
            out.append(
                f"| {self.backend} | {r.kind} | {r.terms} | {r.handoffs} | {r.faults} | "
                f"{r.overlaps} | {r.token_errors} | {r.longest_gap:.2f} |"
            )
        return "\n".join(out)


@dataclass(frozen=True)
class KindRow:
    kind: str
    terms: int
    handoffs: int
    faults: int
    overlaps: int
    token_errors: int
    longest_gap: float


Pairs = list[tuple[Interval, Interval]]


def token_errors(
    intervals: Sequence[Interval],
    torn_writes: Sequence[tuple[float, str]] = (),
    semaphores: Sequence[str] = (),
) -> tuple[Pairs, int, Pairs]:
    """Pairs of successive terms of one key whose tokens do not increase, resumed
    terms, and the decreasing pairs a torn emulator write of their key explains (a
    semaphore key: pairs of electors given one token, and each elector's own order)."""
    bad: Pairs = []
    excused: Pairs = []
    resumed = 0
    for key, terms in by_key(intervals).items():
        e: Pairs = []
        if key in semaphores:
            b, r = _slot_token_errors(terms)
        else:
            tears = sorted(t for t, k in torn_writes if k == key)
            b, r, e = _key_token_errors(terms, tears)
        bad += b
        resumed += r
        excused += e
    return bad, resumed, excused


def _key_token_errors(
    intervals: Sequence[Interval], tears: Sequence[float] = ()
) -> tuple[Pairs, int, Pairs]:
    ordered = sorted(intervals, key=lambda i: (i.since, i.until))
    bad: Pairs = []
    excused: Pairs = []
    resumed = 0
    for a, b in itertools.pairwise(ordered):
        if b.token > a.token:
            continue
        if b.token == a.token and b.identity == a.identity:
            resumed += 1
            continue
        if any(a.since < t <= b.since for t in tears):
            excused.append((a, b))
            continue
        bad.append((a, b))
    return bad, resumed, excused


def _slot_token_errors(
    intervals: Sequence[Interval],
) -> tuple[list[tuple[Interval, Interval]], int]:
    bad: list[tuple[Interval, Interval]] = []
    resumed = 0
    first: dict[int, Interval] = {}
    for i in sorted(intervals, key=lambda i: (i.since, i.until)):
        seen = first.setdefault(i.token, i)
        if seen is not i and seen.identity != i.identity:
            bad.append((seen, i))
    for terms in by_identity(intervals).values():
        b, r, _ = _key_token_errors(terms)  # no torn writes: per elector, not per key
        bad += b
        resumed += r
    return bad, resumed


def by_identity(intervals: Iterable[Interval]) -> dict[str, list[Interval]]:
    out: dict[str, list[Interval]] = {}
    for i in intervals:
        out.setdefault(i.identity, []).append(i)
    return out


def most_at_once(intervals: Sequence[Interval]) -> int:
    """The most electors whose terms share one instant (a term ends before the next
    that begins at the same instant, as ``overlaps`` counts them)."""
    points = sorted([(i.since, 1) for i in intervals] + [(i.until, -1) for i in intervals])
    now = most = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


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
    # after ``end`` the harness is stopping every elector: no gap counts there
    return [(s, min(e, end)) for s, e in out if e > start and s < end]


def counted_from(gap: tuple[float, float], unhealthy: Sequence[tuple[float, float]]) -> float:
    """When the gap began to count: its start, or the end of the last unhealthy window in it."""
    s, e = gap
    begin = s
    for us, ue in merge(unhealthy):
        if us < e and ue > begin:
            begin = max(begin, min(ue, e))
    return begin


def handoffs(intervals: Sequence[Interval]) -> list[Interval]:
    """The terms that began a handoff: the previous term of their key was another's."""
    out = []
    for terms in by_key(intervals).values():
        ordered = sorted(terms, key=lambda i: i.since)
        out += [b for a, b in itertools.pairwise(ordered) if a.identity != b.identity]
    return out


def key_gaps(intervals: Sequence[Interval], start: float, end: float) -> list[tuple[float, float]]:
    """Every key's leaderless stretches, after the key's first election."""
    return [g for terms in by_key(intervals).values() for g in gaps(terms, start, end)]


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
    extra: Sequence[str] = (),
    torn_writes: Sequence[tuple[float, str]] = (),
    limits: dict[str, int] | None = None,
) -> Report:
    limits = limits or {}
    ordered = sorted(intervals, key=lambda i: i.since)
    began_handoff = handoffs(ordered)
    bad_tokens, resumed, excused = token_errors(ordered, torn_writes, tuple(limits or ()))
    all_gaps = key_gaps(ordered, start, end)
    slow: list[tuple[float, float, float]] = []
    counted: list[tuple[float, float, float]] = []
    for g in all_gaps:
        c = g[1] - counted_from(g, unhealthy)
        counted.append((g[0], g[1], c))
        if c > bounds.gap:
            slow.append((g[0], g[1], c))
    bad_pairs = overlaps([i for i in ordered if i.key not in limits])
    keyed = by_key(ordered)
    most = {k: (most_at_once(keyed.get(k, [])), n) for k, n in limits.items()}
    return Report(
        backend=backend,
        duration=end - start,
        electors=electors,
        terms=len(ordered),
        handoffs=len(began_handoff),
        faults=Counter(f.kind for f in faults),
        overlaps=bad_pairs,
        token_errors=bad_tokens,
        resumed_terms=resumed,
        longest_gap=max((e - s for s, e in all_gaps), default=0.0),
        longest_healthy_gap=max((c for _, _, c in counted), default=0.0),
        gap_bound=bounds.gap,
        slow_gaps=slow,
        keys=len({i.key for i in ordered}),
        most_holders=most,
        by_kind=split_by_kind(
            ordered, began_handoff, bad_pairs, bad_tokens, counted, faults, bounds.gap
        ),
        extra=list(extra),
        torn_writes=list(torn_writes),
        emulator_resets=excused,
    )


def split_by_kind(
    terms: Sequence[Interval],
    began_handoff: Sequence[Interval],
    bad_pairs: Sequence[tuple[Interval, Interval]],
    bad_tokens: Sequence[tuple[Interval, Interval]],
    counted_gaps: Sequence[tuple[float, float, float]],
    faults: Sequence[Fault],
    after: float,
) -> list[KindRow]:
    """One row per fault kind, one for "quiet" and one for "all" (see the module doc)."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for f in faults:
        windows.setdefault(f.kind, []).append((f.start, f.end + after))
    for kind in windows:
        windows[kind] = merge(windows[kind])
    everywhere = merge([w for ws in windows.values() for w in ws])

    def inside(t: float, ws: Sequence[tuple[float, float]]) -> bool:
        return any(s <= t <= e for s, e in ws)

    def row(kind: str, where: Callable[[float], bool], nfaults: int) -> KindRow:
        return KindRow(
            kind,
            terms=sum(1 for i in terms if where(i.since)),
            handoffs=sum(1 for i in began_handoff if where(i.since)),
            faults=nfaults,
            overlaps=sum(1 for _, b in bad_pairs if where(b.since)),
            token_errors=sum(1 for _, b in bad_tokens if where(b.since)),
            longest_gap=max((c for s, _, c in counted_gaps if where(s)), default=0.0),
        )

    count = Counter(f.kind for f in faults)
    rows = [row(k, lambda t, ws=ws: inside(t, ws), count[k]) for k, ws in sorted(windows.items())]
    rows.append(row("quiet", lambda t: not inside(t, everywhere), 0))
    rows.append(row("all", lambda t: True, len(faults)))
    return rows
