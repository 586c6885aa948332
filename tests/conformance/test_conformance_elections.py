"""C1, elections: one leader among several, crash failover, graceful handoff, rising tokens.

Each scenario runs with three processes of each language's adapter, and with
the languages mixed on one key. Safety is judged on the adapters' own reports
(their ``elected``/``ousting`` times), by the chaos run's checker
(``support.chaos_check``): no two terms share an instant (I1), tokens rise
from term to term (I2), and no leaderless gap exceeds term + retry + slack
(L1, L2). The figures measured are printed (``pytest -s``).
"""

from __future__ import annotations

import time

import httpx
import pytest

from conformance.adapters import AdapterProcess, intervals
from conformance.conftest import CASTS, TIMING, Cast
from support.chaos_check import Bounds, Fault, check
from support.procs import wait_until

SLACK = 1.5
"""Request latency and scheduling on a loaded 2-core machine (the chaos run's
allowance is 2 s); each test prints what it measured against it."""

BOUNDS = Bounds(term=TIMING.term, retry=TIMING.retry, slack=SLACK)
WAIT = 15.0
"""Longest any single step may take before the test gives up (a failure, not a bound)."""

pytestmark = pytest.mark.parametrize("cast", CASTS, indirect=True)


def leader_of(procs: list[AdapterProcess]) -> AdapterProcess:
    wait_until(lambda: any(p.leading for p in procs), WAIT, what="a leader elected")
    leaders = [p for p in procs if p.leading]
    assert len(leaders) == 1, [p.events for p in procs]
    return leaders[0]


def new_leader(procs: list[AdapterProcess], before: AdapterProcess) -> AdapterProcess:
    others = [p for p in procs if p is not before and p.proc.poll() is None]
    wait_until(lambda: any(p.leading for p in others), WAIT, what="another leader elected")
    (leader,) = [p for p in others if p.leading]
    return leader


def record(cast: Cast, key: str) -> dict[str, object]:
    url = f"{cast.secured.url}/v1/leases/{key}-{cast.name}"
    headers = cast.secured.tokens.header("reader")
    answer: dict[str, object] = httpx.get(url, headers=headers, timeout=10).json()
    return answer


def assert_safe(cast: Cast, faults: list[Fault], start: float) -> None:
    end = time.time()
    report = check(
        intervals(cast.procs, end),
        faults,
        [],
        BOUNDS,
        start=start,
        end=end,
        backend="file",
        electors=len(cast.procs),
    )
    print(f"\n[{cast.name}]\n{report.table()}")
    assert report.ok, report.problems


def test_one_leader_among_several(cast: Cast) -> None:
    start = time.time()
    procs = cast.start("one", count=3)
    leader = leader_of(procs)
    elected = leader.of("elected")[0]
    # Hold on until the lease has outlived one ttl: the leader renewed, and the
    # others kept asking all along.
    key = "one"

    def outlived_a_ttl() -> bool:
        lease = record(cast, key)
        return (
            lease.get("holder") == leader.identity and time.time() - elected["time"] > TIMING.term
        )

    wait_until(outlived_a_ttl, WAIT, what="the lease renewed past one ttl")
    lease = record(cast, key)
    assert lease["held"] is True and lease["fencing_token"] == elected["fencing_token"]
    assert [p for p in procs if p.of("elected")] == [leader], [p.events for p in procs]
    assert leader.of("ousting") == []
    assert_safe(cast, [], start)


def test_crash_failover_within_ttl_and_retry(cast: Cast) -> None:
    start = time.time()
    procs = cast.start("crash", count=3)
    leader = leader_of(procs)
    token = leader.of("elected")[0]["fencing_token"]
    leader.kill()
    assert leader.killed_at is not None
    successor = new_leader([p for p in procs if p is not leader], leader)
    taken = successor.of("elected")[0]
    took = taken["time"] - leader.killed_at
    print(f"\n[{cast.name}] failover {took:.2f} s after SIGKILL (bound {BOUNDS.gap:.2f} s)")
    assert took <= BOUNDS.gap
    assert taken["fencing_token"] > token
    assert_safe(cast, [Fault("kill", leader.identity, leader.killed_at, leader.killed_at)], start)


def test_graceful_handoff_on_sigterm_with_rising_tokens(cast: Cast) -> None:
    start = time.time()
    procs = cast.start("handoff", count=3)
    leader = leader_of(procs)
    tokens = [leader.of("elected")[0]["fencing_token"]]
    faults = []
    for _ in range(2):  # two handoffs: three terms in a row
        stopped_at = time.time()
        assert leader.terminate() == 0, f"{leader.identity} did not exit 0 on SIGTERM"
        faults.append(Fault("term", leader.identity, stopped_at, stopped_at))
        ousting = leader.of("ousting")
        assert [e["fencing_token"] for e in ousting] == tokens[-1:], leader.events
        successor = new_leader(procs, leader)
        taken = successor.of("elected")[0]
        took = taken["time"] - stopped_at
        bound = TIMING.retry + SLACK
        print(f"\n[{cast.name}] handoff {leader.identity} -> {successor.identity}: {took:.2f} s")
        print(f"after SIGTERM (bound {bound:.2f} s)")
        # The stopped leader released: the successor need not wait for expiry.
        assert took <= bound, [p.events for p in procs]
        assert taken["time"] >= ousting[-1]["time"]  # one host, one clock
        tokens.append(taken["fencing_token"])
        leader = successor
    assert tokens == sorted(set(tokens)), f"tokens not strictly rising: {tokens}"
    assert_safe(cast, faults, start)
