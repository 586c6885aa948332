"""Electors in separate processes on one key, against a real service (file backend).

Every scenario runs with both electors (the ``kind`` fixture: sync, async).

Each process is ``support/elector_proc.py``, logging its own leadership terms
with CLOCK_MONOTONIC (system-wide on Linux, so comparable between processes).
The tests SIGKILL, SIGSTOP and stop them and check, from those logs:

- one leader (I1): no two electors' self-reported leadership intervals overlap;
- fencing (I2): successive terms of the key carry strictly increasing fencing tokens;
- L1: after the leader is SIGKILLed another leads within ttl + retry (+ slack);
- L2: after the leader stops (and releases) another leads within retry (+ slack).

Bounds are generous (the machine is shared); measured gaps are printed by
``bench``-style output with ``-s``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.elector_proc import ElectorProcess, Interval, overlaps
from support.procs import ServiceProcess, wait_until

TERM, RENEW, RETRY = 3.0, 0.75, 0.5
SLACK = 2.0  # seconds of scheduling and request latency allowed on a busy 2-core host


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Every scenario runs with ``LeaderElector`` and with ``AsyncLeaderElector``."""
    return str(request.param)


@pytest.fixture
def electors(
    service: ServiceProcess, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> Iterator[list[ElectorProcess]]:
    watch = getattr(request, "param", True)  # False: followers poll every retry
    procs = [
        ElectorProcess(
            service.url,
            "job",
            f"e{i}",
            tmp_path / f"e{i}.jsonl",
            term=TERM,
            renew=RENEW,
            retry=RETRY,
            watch=watch,
            kind=kind,
        ).start()
        for i in range(3)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.stop()


def leaders(procs: list[ElectorProcess]) -> list[ElectorProcess]:
    return [p for p in procs if p.proc is not None and p.proc.poll() is None and p.leading]


def elected_after(procs: list[ElectorProcess], t: float) -> list[tuple[float, ElectorProcess]]:
    return [
        (e["since"], p)
        for p in procs
        for e in p.events()
        if e["event"] == "elected" and e["since"] > t
    ]


def all_intervals(procs: list[ElectorProcess]) -> list[Interval]:
    return [i for p in procs for i in p.intervals()]


def check_safety(procs: list[ElectorProcess]) -> list[Interval]:
    terms = sorted(all_intervals(procs), key=lambda i: i.since)
    assert not overlaps(terms), overlaps(terms)  # one leader (I1)
    for a, b in itertools.pairwise(terms):  # fencing (I2)
        assert b.token >= a.token, (a, b)
        if b.identity != a.identity:
            assert b.token > a.token, (a, b)
    return terms


@pytest.mark.parametrize("electors", [True, False], ids=["watch", "poll"], indirect=True)
def test_one_leader_crash_failover_and_graceful_handoff(
    electors: list[ElectorProcess], service: ServiceProcess
) -> None:
    wait_until(lambda: len(leaders(electors)) == 1, 30, what="a leader")
    first = leaders(electors)[0]
    assert httpx.get(f"{service.url}/v1/leases/job").json()["holder"] == first.identity

    # L1: SIGKILL the leader; another leads within ttl + retry (+ slack).
    first.kill()
    assert first.killed_at is not None
    rest = [p for p in electors if p is not first]
    wait_until(lambda: elected_after(rest, first.killed_at or 0), TERM + RETRY + 15,
               what="a new leader after SIGKILL")  # fmt: skip
    since, second = elected_after(rest, first.killed_at)[0]
    failover = since - first.killed_at
    print(f"L1 failover after SIGKILL: {failover:.3f} s (ttl {TERM} + retry {RETRY})")
    assert failover <= TERM + RETRY + SLACK

    # L2: stop the leader (it releases); the last one leads within retry (+ slack).
    assert second.stop() == 0
    third = next(p for p in rest if p is not second)
    ousted = [e for e in second.events() if e["event"] == "ousted"][-1]
    assert ousted["ended_by"] == "stopped"
    assert second.events()[-1]["event"] == "stopped"
    wait_until(lambda: elected_after([third], ousted["until"]), RETRY + 15, what="handoff")
    handoff = elected_after([third], ousted["until"])[0][0] - ousted["until"]
    print(f"L2 handoff after stop: {handoff:.3f} s (retry {RETRY})")
    assert handoff <= RETRY + SLACK

    assert third.stop() == 0
    assert not httpx.get(f"{service.url}/v1/leases/job").json()["held"]  # released
    terms = check_safety(electors)
    assert [t.identity for t in terms][-3:] == [first.identity, second.identity, third.identity]
    for p in (second, third):  # on_ousting once for every on_elected, also on stop
        kinds = [e["event"] for e in p.events()]
        assert kinds.count("elected") == kinds.count("ousted")


def test_paused_leader_steps_down_first_and_never_overlaps(
    electors: list[ElectorProcess],
) -> None:
    wait_until(lambda: len(leaders(electors)) == 1, 30, what="a leader")
    old = leaders(electors)[0]
    old.pause()
    paused_at = time.monotonic()
    rest = [p for p in electors if p is not old]
    # Paused for longer than the ttl, and until someone else has taken over.
    wait_until(
        lambda: elected_after(rest, paused_at) and time.monotonic() - paused_at > TERM + 1,
        TERM + RETRY + 20,
        what="a new leader while the old one is paused",
    )
    old.resume()
    wait_until(
        lambda: (
            {"ousted", "resumed"} <= {e["event"] for e in old.events() if e["mono"] > paused_at}
        ),
        20,
        what="the resumed process reporting",
    )
    after = [e for e in old.events() if e["mono"] > paused_at]
    first = after[0]
    assert first["event"] in ("ousted", "resumed"), after
    assert first["event"] == "ousted" or first["leader"] is False, after
    resumed = next(e for e in after if e["event"] == "resumed")
    assert resumed["leader"] is False
    ousted = next(e for e in after if e["event"] == "ousted")
    assert ousted["ended_by"] in ("deadline", "lost")
    assert ousted["until"] <= paused_at + TERM  # the deadline, not the moment it woke
    kinds = [e["event"] for e in after]
    assert kinds.index("ousted") < min(
        (kinds.index(k) for k in ("elected", "error") if k in kinds), default=len(kinds)
    )
    for p in electors:
        assert p.stop() == 0
    check_safety(electors)
