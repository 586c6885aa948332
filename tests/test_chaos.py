"""The chaos harness: its checker and proxy, and a short run on every backend.

The short runs (``LEADERELECTION_CHAOS_SECONDS``, default 15 per backend, 8
for SQLite and MariaDB) must end with no overlap (one leader (I1)), strictly
increasing tokens (fencing (I2)) and no gap over the bound while a healthy
candidate existed (L1/L2). For a longer run::

    .venv/bin/python tests/support/chaos.py --backend all --duration 600
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from support.chaos import STAGES, Chaos
from support.chaos_check import Bounds, Fault, check, counted_from
from support.elector_proc import Interval
from support.needs import missing
from support.procs import ServiceProcess
from support.tcpproxy import TcpProxy

SECONDS = float(os.environ.get("LEADERELECTION_CHAOS_SECONDS", "15"))
# SQLite and MariaDB run shorter by default, with three electors (not five) and
# shorter pauses between faults: they share the SQL code PostgreSQL exercises for
# the full time, and CI time is kept small.
SHORT = {"sqlite": min(SECONDS, 8.0), "mysql": min(SECONDS, 8.0)}
BOUNDS = Bounds(term=3.0, retry=0.5, slack=1.0)  # gap bound 4.5 s


def iv(identity: str, token: int, since: float, until: float) -> Interval:
    return Interval(identity, token, since, until, "deadline")


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


def test_checker_holds_gaps_to_the_bound_after_unhealthy_windows() -> None:
    terms = [iv("a", 1, 0, 10), iv("b", 2, 20, 30)]
    slow = check(terms, [], [], BOUNDS, start=0, end=30)
    assert slow.slow_gaps == [(10, 20, 10)] and not slow.ok
    # backend down from 8 to 17: the gap counts from 17, 3 s: within the bound
    excused = check(terms, [], [(8, 17)], BOUNDS, start=0, end=30)
    assert excused.ok and excused.longest_healthy_gap == 3 and excused.longest_gap == 10
    assert counted_from((10, 20), [(0, 5), (12, 13), (15, 16)]) == 16
    assert counted_from((10, 20), [(25, 30)]) == 10


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
    pauses = (0.3, 1.5) if backend in SHORT else (0.5, 3.0)  # at least two faults either way
    electors = 3 if backend in SHORT else 5
    report = Chaos(
        backend,
        tmp_path / backend,
        duration=seconds,
        electors=electors,
        pause_between=pauses,
        log=lines.append,
    ).run()
    print("\n".join(lines))
    print(report.table())
    assert report.ok, "\n".join([*report.problems, f"logs in {tmp_path}"])
    assert sum(report.faults.values()) >= 2
