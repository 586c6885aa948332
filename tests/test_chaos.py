"""The chaos harness: its checker and proxy, and a short run on every backend.

The short runs (``LEADERELECTION_CHAOS_SECONDS``, default 15 per backend, 8
for SQLite and MariaDB) put several elector processes on many keys each, with
two faults at a time, every fault kind the backend offers injected at least
once; they must end with no overlap (one leader (I1)), strictly increasing
tokens per key (fencing (I2)), every granted token below the next after a
restart (durability (I3)) and no gap over the bound while a healthy candidate
existed (L1/L2). The long run, its command and its table are in
docs/reliability.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from support.chaos import KINDS, STAGES, Chaos
from support.chaos_check import Bounds, Fault, check, counted_from
from support.elector_proc import Interval, leadership_intervals
from support.needs import missing
from support.procs import ServiceProcess, wait_until
from support.tcpproxy import TcpProxy

SECONDS = float(os.environ.get("LEADERELECTION_CHAOS_SECONDS", "15"))
# SQLite and MariaDB run shorter by default, with three electors (not five) and
# shorter pauses between faults: they share the SQL code PostgreSQL exercises for
# the full time, and CI time is kept small.
SHORT = {"sqlite": min(SECONDS, 8.0), "mysql": min(SECONDS, 8.0)}
# ... and with the faults the SQL code path or the backend adds over PostgreSQL's
SHORT_KINDS = ("kill_leader", "pause_service", "restart_service", "restart_backend")
BOUNDS = Bounds(term=3.0, retry=0.5, slack=1.0)  # gap bound 4.5 s


def iv(identity: str, token: int, since: float, until: float, key: str = "") -> Interval:
    return Interval(identity, token, since, until, "deadline", key)


def test_checker_passes_clean_handoffs() -> None:
    terms = [iv("a", 1, 0, 10), iv("b", 2, 11, 20), iv("a", 3, 21, 30)]
    report = check(terms, [Fault("kill_leader", "a", 10, 10)], [], BOUNDS, start=0, end=30)
    assert report.ok, report.problems
    assert (report.terms, report.handoffs, report.longest_gap) == (3, 2, 1.0)
    assert "PASS" in report.table() and "kill_leader 1" in report.table()


def test_checker_finds_overlap() -> None:
    report = check([iv("a", 1, 0, 10), iv("b", 2, 9.99, 20)], [], [], BOUNDS, start=0, end=20)
    assert len(report.overlaps) == 1 and not report.ok
    assert "one leader (I1) overlap" in report.problems[0]


def test_checker_finds_tokens_that_do_not_increase() -> None:
    same_token_other_holder = [iv("a", 2, 0, 5), iv("b", 2, 6, 9)]
    older_token = [iv("a", 3, 0, 5), iv("b", 2, 6, 9)]
    resumed = [iv("a", 2, 0, 5), iv("a", 2, 5.5, 9)]  # same elector, same server term
    for terms, errors in [(same_token_other_holder, 1), (older_token, 1), (resumed, 0)]:
        report = check(terms, [], [], BOUNDS, start=0, end=9)
        assert len(report.token_errors) == errors, terms
    assert check(resumed, [], [], BOUNDS, start=0, end=9).resumed_terms == 1


def test_checker_counts_a_reset_after_a_torn_emulator_write_apart() -> None:
    # k: 13 then, after the emulator tore k's object at t=12, 1 and 2 (the count
    # starts again); j had no torn write, so its drop is a fencing (I2) error.
    terms = [iv("a", 13, 0, 11, "k"), iv("b", 1, 13, 20, "k"), iv("a", 2, 21, 30, "k")]
    terms += [iv("a", 5, 0, 11, "j"), iv("b", 1, 13, 30, "j")]
    report = check(terms, [], [], BOUNDS, start=0, end=30, torn_writes=[(12.0, "k")])
    assert [(a.token, b.token) for a, b in report.emulator_resets] == [(13, 1)]
    assert [(a.key, a.token, b.token) for a, b in report.token_errors] == [("j", 5, 1)]
    assert not report.ok
    # after the reset the new count must still rise: 2 then 1 is an error again
    later = [iv("a", 13, 0, 11, "k"), iv("b", 2, 13, 20, "k"), iv("a", 1, 21, 30, "k")]
    again = check(later, [], [], BOUNDS, start=0, end=30, torn_writes=[(12.0, "k")])
    assert len(again.emulator_resets) == 1 and len(again.token_errors) == 1
    # a torn write is only an excuse for the pair that straddles it
    before = check(terms[:3], [], [], BOUNDS, start=0, end=30, torn_writes=[(25.0, "k")])
    assert len(before.token_errors) == 1 and not before.emulator_resets
    clean = check(terms[:3], [], [], BOUNDS, start=0, end=30, torn_writes=[(12.0, "k")])
    assert clean.ok, clean.problems
    assert ("token resets they explain (not I2)", "1") in clean.rows()


def test_checker_holds_gaps_to_the_bound_after_unhealthy_windows() -> None:
    terms = [iv("a", 1, 0, 10), iv("b", 2, 20, 30)]
    slow = check(terms, [], [], BOUNDS, start=0, end=30)
    assert slow.slow_gaps == [(10, 20, 10)] and not slow.ok
    # backend down from 8 to 17: the gap counts from 17, 3 s: within the bound
    excused = check(terms, [], [(8, 17)], BOUNDS, start=0, end=30)
    assert excused.ok and excused.longest_healthy_gap == 3 and excused.longest_gap == 10
    assert counted_from((10, 20), [(0, 5), (12, 13), (15, 16)]) == 16
    assert counted_from((10, 20), [(25, 30)]) == 10


def test_an_open_term_ends_at_its_last_logged_deadline_or_at_the_kill() -> None:
    # SIGSTOPped past its deadline, then killed: it led only until the deadline
    def ev(event: str, mono: float, **kw: object) -> dict[str, object]:
        return {"event": event, "identity": "e1", "mono": mono, "key": "k", **kw}

    elected = ev("elected", 10.0, token=4, since=10.0, deadline=14.0)
    renewed = ev("renewed", 12.0, token=4, deadline=17.5)
    stale = ev("renewed", 12.5, token=3, deadline=30.0)  # another term's: ignored
    [killed_late] = leadership_intervals([elected], open_until=25.0)
    assert (killed_late.since, killed_late.until) == (10.0, 14.0)
    [renewed_then_killed] = leadership_intervals([elected, renewed, stale], open_until=25.0)
    assert renewed_then_killed.until == 17.5
    [killed_early] = leadership_intervals([elected, renewed], open_until=15.0)
    assert killed_early.until == 15.0
    [still_running] = leadership_intervals([elected, renewed])
    assert still_running.until == 17.5


def test_checker_judges_each_key_alone() -> None:
    # a leads k1 while b leads k2: no overlap; tokens are per key, so k2's 1 is fine
    apart = [iv("a", 5, 0, 10, "k1"), iv("b", 1, 0, 20, "k2"), iv("b", 6, 11, 20, "k1")]
    report = check(apart, [], [], BOUNDS, start=0, end=20)
    assert report.ok, report.problems
    assert (report.keys, report.handoffs, report.longest_gap) == (2, 1, 1.0)
    # k2 without a leader from 10 to 20 is a gap of its own, though k1 is led
    k2_gap = [iv("a", 5, 0, 20, "k1"), iv("b", 1, 0, 10, "k2")]
    assert check(k2_gap, [], [], BOUNDS, start=0, end=20).slow_gaps == [(10, 20, 10)]
    same_key = [iv("a", 5, 0, 10, "k1"), iv("b", 6, 9, 20, "k1"), iv("b", 1, 0, 20, "k2")]
    bad = check(same_key, [], [], BOUNDS, start=0, end=20)
    assert [(a.key, b.key) for a, b in bad.overlaps] == [("k1", "k1")]
    repeated = [iv("a", 5, 0, 10, "k1"), iv("b", 5, 11, 20, "k1"), iv("c", 5, 0, 20, "k2")]
    assert len(check(repeated, [], [], BOUNDS, start=0, end=20).token_errors) == 1


def test_checker_splits_figures_by_fault_kind() -> None:
    terms = [iv("a", 1, 0, 10), iv("b", 2, 12, 30), iv("a", 3, 50, 60), iv("b", 4, 61, 70)]
    faults = [Fault("kill_leader", "a", 9, 10), Fault("blackhole", "b", 55, 60)]
    rows = {r.kind: r for r in check(terms, faults, [], BOUNDS, start=0, end=70).by_kind}
    # b's term began 2 s after the kill, within one gap bound (4.5 s): the kill's
    assert (rows["kill_leader"].terms, rows["kill_leader"].handoffs) == (1, 1)
    assert rows["kill_leader"].longest_gap == 2.0 and rows["kill_leader"].faults == 1
    assert (rows["blackhole"].terms, rows["blackhole"].handoffs) == (1, 1)
    # a's term from 50 began 20 s after the last fault ended: quiet, as was the first
    assert (rows["quiet"].terms, rows["quiet"].handoffs, rows["quiet"].longest_gap) == (2, 1, 20)
    assert (rows["all"].terms, rows["all"].handoffs, rows["all"].faults) == (4, 3, 2)
    table = check(terms, faults, [], BOUNDS, start=0, end=70, backend="file").kind_table()
    assert "| file | kill_leader | 1 | 1 | 1 | 0 | 0 | 2.00 |" in table


def test_checker_counts_the_most_holders_of_a_semaphore() -> None:
    # three electors at once on "s" (limit 3): allowed; a fourth at once: reported
    ok = [
        iv("a", 1, 0, 10, "s"),
        iv("b", 2, 1, 5, "s"),
        iv("c", 3, 2, 6, "s"),
        iv("d", 4, 5, 9, "s"),
    ]
    report = check(ok, [], [], BOUNDS, start=0, end=10, limits={"s": 3})
    assert report.ok, report.problems
    assert report.most_holders == {"s": (3, 3)} and report.overlaps == []
    assert ("most holders of semaphore s at once", "3 (limit 3)") in report.rows()
    over = [*ok, iv("e", 5, 3, 4, "s")]
    bad = check(over, [], [], BOUNDS, start=0, end=10, limits={"s": 3})
    assert not bad.ok and bad.most_holders == {"s": (4, 3)}
    assert any("4 held a slot at once, limit 3" in p for p in bad.problems)


def test_checker_holds_semaphore_tokens_unique_across_electors() -> None:
    # logged out of grant order (granted together): fine; one token twice: an I2 error
    fine = [iv("a", 2, 0, 5, "s"), iv("b", 1, 0.01, 5, "s"), iv("a", 3, 6, 9, "s")]
    assert check(fine, [], [], BOUNDS, start=0, end=9, limits={"s": 2}).token_errors == []
    twice = [iv("a", 2, 0, 5, "s"), iv("b", 2, 1, 5, "s")]
    report = check(twice, [], [], BOUNDS, start=0, end=5, limits={"s": 2})
    assert len(report.token_errors) == 1 and not report.ok


def test_checker_fails_on_a_probe_problem() -> None:
    report = check([iv("a", 1, 0, 10)], [], [], BOUNDS, start=0, end=10, extra=["disk"])
    assert not report.ok and report.problems == ["disk"]


def test_checker_fails_when_nobody_led() -> None:
    assert not check([], [], [], BOUNDS, start=0, end=10).ok


def test_proxy_forwards_cuts_and_restores(service: ServiceProcess) -> None:
    with (
        TcpProxy(service.port) as proxy,
        httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=5) as http,
    ):
        assert http.get("/healthz").status_code == 200  # a kept-alive connection
        proxy.cut()
        with pytest.raises(httpx.TransportError):
            http.get("/healthz")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{proxy.port}/healthz", timeout=5)
        proxy.restore()
        assert http.get("/healthz").status_code == 200


def test_proxy_black_hole_hangs_requests_without_a_reset(service: ServiceProcess) -> None:
    with (
        TcpProxy(service.port) as proxy,
        httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=0.5) as http,
    ):
        assert http.get("/healthz").status_code == 200  # a kept-alive connection
        sent = proxy.upstream_bytes
        assert sent > 0
        proxy.black_hole()
        with pytest.raises(httpx.ReadTimeout):  # open connection: the answer never comes
            http.get("/healthz")
        with pytest.raises(httpx.ReadTimeout):  # new connection: accepted, then silence
            httpx.get(f"http://127.0.0.1:{proxy.port}/healthz", timeout=0.5)
        assert proxy.upstream_bytes == sent  # nothing reached the service
        proxy.restore()
        assert http.get("/healthz").status_code == 200


def test_proxy_black_hole_hangs_calls_then_delivers_late(service: ServiceProcess) -> None:
    with (
        TcpProxy(service.port) as proxy,
        httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=0.5) as held,
        httpx.Client(base_url=service.url, timeout=5) as direct,
    ):
        assert held.get("/healthz").status_code == 200
        proxy.hold()
        # no reset, no refusal: the call waits for an answer until its own timeout
        with pytest.raises(httpx.TimeoutException):
            held.get("/healthz")
        with pytest.raises(httpx.TimeoutException):
            held.post("/v1/leases/late/acquire", json={"holder": "h", "ttl": 30})
        assert direct.get("/v1/leases/late").status_code == 404  # nothing got through
        proxy.restore()
        # the acquire sent into the black hole reaches the service now, as a
        # retransmission would: the service grants a lease its client gave up on
        wait_until(
            lambda: direct.get("/v1/leases/late").status_code == 200, 10, what="late delivery"
        )
        assert direct.get("/v1/leases/late").json()["holder"] == "h"
        assert held.get("/healthz").status_code == 200


def _available(backend: str) -> None:
    if backend == "postgres":
        from support.sqlservers import find_pg_bin

        if find_pg_bin() is None:
            missing("PostgreSQL binaries (initdb, pg_ctl)", "apt-get install postgresql")
    elif backend == "mysql":
        from support.sqlservers import find_mariadbd

        if find_mariadbd() is None:
            missing("MariaDB binaries (mariadbd)", "apt-get install mariadb-server")
    elif backend == "gcs":
        from support.gcs import require_emulator

        require_emulator()


@pytest.mark.parametrize("backend", STAGES)
def test_short_chaos_run(backend: str, tmp_path: Path) -> None:
    _available(backend)
    lines: list[str] = []
    seconds = SHORT.get(backend, SECONDS)
    pauses = (0.3, 1.5) if backend in SHORT else (0.5, 2.0)
    electors = 3 if backend in SHORT else 4
    chaos = Chaos(
        backend,
        tmp_path / backend,
        duration=seconds,
        electors=electors,
        keys=8,  # every process elects on each: one fault hits several terms
        injectors=2,
        pause_between=pauses,
        kinds=KINDS if backend not in SHORT else SHORT_KINDS,
        log=lines.append,
    )
    report = chaos.run()
    print("\n".join(lines))
    print(report.table())
    print(report.kind_table())
    assert report.ok, "\n".join([*report.problems, f"logs in {tmp_path}"])
    assert set(report.faults) == set(chaos.kinds)  # every kind the backend offers, once at least
    assert report.keys == 8 and report.handoffs > 0


@pytest.mark.parametrize("backend", ["file", "postgres"])
def test_short_chaos_run_with_a_semaphore(backend: str, tmp_path: Path) -> None:
    """A semaphore key (N = 3, 7 electors) beside a single lease, under the same faults."""
    _available(backend)
    lines: list[str] = []
    chaos = Chaos(
        backend,
        tmp_path / backend,
        duration=SECONDS,
        electors=7,
        keys=1,
        injectors=2,
        pause_between=(0.5, 2.0),
        semaphore=3,
        log=lines.append,
    )
    report = chaos.run()
    print("\n".join(lines))
    print(report.table())
    assert report.ok, "\n".join([*report.problems, f"logs in {tmp_path}"])
    most, limit = report.most_holders["sem"]
    assert limit == 3 and 2 <= most <= 3  # more than one held at once, never more than N
