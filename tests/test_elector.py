"""``LeaderElector`` and ``AsyncLeaderElector`` in this process, against a real service.

Every scenario runs on both electors (the ``electors`` fixture of
``support.electors``, ids ``[sync]`` and ``[async]``). The service is really
killed and really paused (SIGSTOP) here; only a renew call that ignores its
own timeout, which a real server cannot be made to produce on demand, comes
from ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from leaderelection import Config, LeaseClient, RequestTimeout, TransportError
from support.electors import Electors
from support.procs import REPO, ServiceProcess, free_port, wait_until

FAST = Config(term=2.0, renew=0.4, retry=0.3)
# The promise the step-down tests hold the elector to: on_ousting fires after the
# local deadline and before the service's expiry of the last grant, which is at
# least the deadline + margin. The margin covers the wake-up of the watchdog
# thread: Event.wait(0.02) woke late by at most 36-97 ms (p99 12-25 ms) in three
# runs of 400 on the shared 2-core machine at load average 15.8, so 0.5 s leaves
# 5x headroom (term / 10 = 0.2 s would leave 2x).
WIDE_MARGIN = Config(term=2.0, renew=0.4, retry=0.3, margin=0.5)


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the tests that do not kill or pause it; each uses its own key."""
    data = tmp_path_factory.mktemp("data")
    with ServiceProcess(data.as_uri(), log_path=data.parent / "service.log") as svc:
        yield svc


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]


@pytest.fixture
def client(shared_service: ServiceProcess) -> Iterator[LeaseClient]:
    with LeaseClient(shared_service.url) as c:
        yield c


class Recorder:
    """Callbacks that record (event, identity, monotonic time) and errors (any thread)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.errors: list[Exception] = []
        self.ousted = threading.Event()

    def elected(self, identity: str, cancel: Callable[[], None]) -> None:
        self.events.append(("elected", identity, time.monotonic()))

    def ousting(self, identity: str, cancel: Callable[[], None]) -> None:
        self.events.append(("ousting", identity, time.monotonic()))
        self.ousted.set()

    def error(self, identity: str, error: Exception, cancel: Callable[[], None]) -> None:
        self.errors.append(error)

    def hooks(self) -> dict[str, Any]:
        return {"on_elected": self.elected, "on_ousting": self.ousting, "on_error": self.error}


def test_elect_renew_and_stop_releases(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    rec = Recorder()
    elector = electors.new(shared_service.url, key, config=FAST, **rec.hooks())
    assert not elector.is_leader and elector.lease is None and elector.leadership is None
    with elector:
        assert elector.wait_for_leadership(20)
        lease = elector.lease
        assert lease is not None and lease.holder == elector.identity
        # Renewals keep it past one ttl, with the same token.
        wait_until(
            lambda: (elector.leadership is not None
                     and (elector.leadership.lease.renewed_at - lease.acquired_at).total_seconds()
                     > FAST.term),
            20, what="renewals past one ttl",
        )  # fmt: skip
        assert elector.is_leader and elector.lease is not None
        assert elector.lease.fencing_token == lease.fencing_token
    assert not elector.is_leader
    assert not client.get(key).held  # stop() released it
    assert [e[0] for e in rec.events] == ["elected", "ousting"]
    assert elector.leadership is not None and elector.leadership.ended_by == "stopped"
    assert rec.errors == []
    assert re.fullmatch(r".+-\d+-[0-9a-f]{8}", elector.identity)  # hostname-pid-random


def test_lease_lost_ends_leadership_at_once(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    rec = Recorder()
    config = Config(term=30, renew=0.3, retry=10)
    elector = electors.new(shared_service.url, key, identity="me", config=config, **rec.hooks())
    with elector:
        assert elector.wait_for_leadership(20)
        assert elector.lease is not None
        token = elector.lease.fencing_token
        client.release(key, "me", token)  # taken away behind its back
        client.acquire(key, "intruder", 30)
        assert rec.ousted.wait(10)
        term = elector.leadership
        assert term is not None and term.ended_by == "lost"
        assert not elector.is_leader and elector.lease is None
        assert term.until < term.since + 10  # long before its deadline
    assert client.get(key).holder == "intruder"  # stop() did not release someone else's
    assert client.get(key).held


def test_leader_steps_down_at_its_deadline_when_the_service_dies(
    electors: Electors, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rec = Recorder()
    with ServiceProcess(data.as_uri()) as svc:
        elector = electors.new(svc.url, "job", config=WIDE_MARGIN, **rec.hooks())
        with elector:
            assert elector.wait_for_leadership(20)
            svc.kill()
            killed = time.monotonic()
            assert rec.ousted.wait(20)
            term = elector.leadership
            assert term is not None and term.ended_by == "deadline"
            assert killed < term.until <= killed + WIDE_MARGIN.term
            # The local deadline falls before the service's own expiry of the
            # last grant it answered (the service decides expiry by wall clock).
            wall_minus_mono = time.time() - time.monotonic()
            assert term.until + wall_minus_mono < term.lease.expires_at.timestamp()
            # and on_ousting fired before the service's expiry (deadline + margin),
            # not at some later retry
            ousting_at = rec.events[-1][2]
            assert 0 <= ousting_at - term.until < WIDE_MARGIN.margin
            assert not elector.is_leader
    assert any(isinstance(e, TransportError) for e in rec.errors), rec.errors


def test_hung_service_does_not_delay_stepping_down(electors: Electors, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rec = Recorder()
    with ServiceProcess(data.as_uri()) as svc:
        elector = electors.new(svc.url, "job", config=FAST, **rec.hooks())
        with elector:
            assert elector.wait_for_leadership(20)
            svc.pause()  # SIGSTOP: connections hang, nothing answers
            try:
                assert rec.ousted.wait(20)
                term = elector.leadership
                assert term is not None and term.ended_by == "deadline"
                assert any(isinstance(e, RequestTimeout) for e in rec.errors), rec.errors
            finally:
                svc.resume()
            # Nobody else wanted it: the same holder leads again, same token.
            assert elector.wait_for_leadership(20)
            assert elector.lease is not None
            assert elector.lease.fencing_token == term.lease.fencing_token
    kinds = [e[0] for e in rec.events]
    assert kinds == ["elected", "ousting", "elected", "ousting"]


LEASE = {
    "key": "job", "holder": "me", "fencing_token": 1, "ttl": 1.0,
    "acquired_at": "2026-01-01T00:00:00.000000Z", "renewed_at": "2026-01-01T00:00:00.000000Z",
    "expires_at": "2026-01-01T00:00:01.000000Z", "transitions": 0, "held": True,
    "state": "held", "server_time": "2026-01-01T00:00:00.000000Z",
}  # fmt: skip


def test_renew_hanging_past_its_timeout_does_not_delay_stepping_down(electors: Electors) -> None:
    gate = threading.Event()
    hanging = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/renew"):
            hanging.set()
            gate.wait(30)  # ignores every timeout, as a wedged proxy might
            return httpx.Response(503, json={"error": "backend_unavailable", "message": "",
                                             "lease": None})  # fmt: skip
        return httpx.Response(200, content=json.dumps(LEASE))

    rec = Recorder()
    config = Config(term=1.5, renew=0.2, retry=0.2, margin=0.5)
    elector = electors.new("http://le.test", "job", handler=handler, identity="me",
                           config=config, watch=False, **rec.hooks())  # fmt: skip
    elector.start()
    try:
        assert elector.wait_for_leadership(10)
        assert rec.ousted.wait(10)
        assert hanging.is_set() and not gate.is_set()  # the renew is still hanging
        term = elector.leadership
        assert term is not None and term.ended_by == "deadline"
        assert term.until - term.since <= config.term - config.margin
        assert 0 <= rec.events[-1][2] - term.until < config.margin  # before the expiry
        assert not elector.is_leader and elector.lease is None
    finally:
        gate.set()
        elector.stop()


def test_injected_clock_decides_leadership(electors: Electors) -> None:
    now = [1000.0]
    elector = electors.new(
        "http://le.test", "job", handler=lambda r: httpx.Response(200, content=json.dumps(LEASE)),
        identity="me", config=Config(term=1.0, renew=0.5, retry=0.2), clock=lambda: now[0],
        watch=False,
    )  # fmt: skip
    elector.start()
    try:
        wait_until(lambda: elector.leadership is not None, 10, what="elected")
        term = elector.leadership
        assert term is not None and term.until == 1000.0 + 1.0 - 0.1
        assert elector.is_leader
        now[0] = term.until  # the clock reaches the deadline: no thread has to run
        assert not elector.is_leader and elector.lease is None
    finally:
        elector.stop()


def test_exceptions_in_callbacks_do_not_kill_the_loop(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    errors: list[Exception] = []

    def boom(identity: str, cancel: Callable[[], None]) -> None:
        raise RuntimeError(f"boom from {identity}")

    elector = electors.new(
        shared_service.url, key, identity="me", config=FAST, on_elected=boom, on_ousting=boom,
        on_error=lambda i, e, c: errors.append(e), coroutines=True,
    )  # fmt: skip
    with elector:
        assert elector.wait_for_leadership(20)
        assert elector.lease is not None
        first = elector.lease
        wait_until(
            lambda: elector.lease is not None and elector.lease.renewed_at > first.renewed_at,
            20, what="a renewal after the callback raised",
        )  # fmt: skip
        assert elector.is_leader
    assert [str(e) for e in errors] == ["boom from me", "boom from me"]
    assert not client.get(key).held


def test_on_error_raising_does_not_kill_the_loop(electors: Electors) -> None:
    calls: list[Exception] = []

    def bad(identity: str, error: Exception, cancel: Callable[[], None]) -> None:
        calls.append(error)
        raise RuntimeError("on_error is broken too")

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    with electors.new(url, "job", config=Config(2, 0.4, 0.1), on_error=bad, watch=False):
        wait_until(lambda: len(calls) >= 3, 20, what="three failed attempts")
    assert all(isinstance(e, TransportError) for e in calls)


def test_cancel_from_a_callback_ends_the_election(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    rec = Recorder()

    def elected(identity: str, cancel: Callable[[], None]) -> None:
        rec.elected(identity, cancel)
        cancel()

    elector = electors.new(shared_service.url, key, config=FAST, on_elected=elected,
                           on_ousting=rec.ousting)  # fmt: skip
    elector.start()
    assert rec.ousted.wait(20)
    assert not elector.wait_for_leadership(20)  # the election has ended
    elector.stop()
    assert [e[0] for e in rec.events] == ["elected", "ousting"]
    assert not client.get(key).held


def test_cancel_closes_the_followers_watch_stream_at_once(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    """Both electors: after cancel(), and before stop(), the service has no stream of ours."""

    def streams() -> float:
        text = httpx.get(f"{shared_service.url}/metrics").text
        line = next(
            x for x in text.splitlines() if x.startswith("leaderelection_watch_subscribers")
        )
        return float(line.split()[-1])

    client.acquire(key, "someone-else", 60)  # the elector stays a follower, watching
    before = streams()
    elector = electors.new(shared_service.url, key, config=FAST)
    elector.start()
    try:
        wait_until(lambda: streams() == before + 1, 20, what="the follower's stream")
        elector.cancel()
        wait_until(lambda: streams() == before, 20, what="the stream closed by cancel()")
    finally:
        elector.stop()


def test_run_while_leader_calls_fn_per_term_and_signals_the_end(
    electors: Electors, shared_service: ServiceProcess, key: str
) -> None:
    tokens: list[int] = []
    ended = threading.Event()
    elector = electors.new(shared_service.url, key, identity="me", config=FAST)

    def started() -> None:
        assert elector.lease is not None
        tokens.append(elector.lease.fencing_token)

    runner = elector.run_while_leader(started, ended.set)
    wait_until(lambda: tokens, 20, what="work started")
    elector.stop()
    runner.join(10)
    assert not runner.is_alive() and ended.is_set()
    assert tokens == [1]


def test_run_while_leader_ends_the_work_when_the_term_is_lost(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    ended = threading.Event()
    started = threading.Event()
    config = Config(term=30, renew=0.3, retry=10)
    elector = electors.new(shared_service.url, key, identity="me", config=config)
    runner = elector.run_while_leader(started.set, ended.set)
    try:
        assert started.wait(20)
        assert elector.lease is not None
        client.release(key, "me", elector.lease.fencing_token)
        client.acquire(key, "other", 30)
        assert ended.wait(10)
        assert not elector.is_leader
        assert elector.leadership is not None and elector.leadership.ended_by == "lost"
    finally:
        elector.stop()
        runner.join(10)
    assert not runner.is_alive()


def test_two_electors_in_one_process_hand_over_on_stop(
    electors: Electors, shared_service: ServiceProcess, key: str
) -> None:
    rec = Recorder()
    client = electors.client(shared_service.url)  # one client shared by both
    hooks = {**rec.hooks(), "coroutines": True}
    a = electors.new(client, key, identity="a", config=FAST, **hooks)
    b = electors.new(client, key, identity="b", config=FAST, **hooks)
    with a:
        assert a.wait_for_leadership(20)
        with b:
            assert not b.wait_for_leadership(FAST.term)  # a keeps renewing
            stopped = time.monotonic()
            a.stop()
            assert b.wait_for_leadership(FAST.retry + 5)
            assert b.lease is not None and b.lease.fencing_token == 2
            print(f"handoff {time.monotonic() - stopped:.3f} s")
    assert [(e[0], e[1]) for e in rec.events] == [
        ("elected", "a"), ("ousting", "a"), ("elected", "b"), ("ousting", "b"),
    ]  # fmt: skip
    assert rec.events[1][2] <= rec.events[2][2]


def test_bad_key_is_refused_at_construction(electors: Electors) -> None:
    with pytest.raises(ValueError, match="key"):
        electors.new("http://127.0.0.1:9", "../etc")


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python client", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example_runs_and_releases_on_sigterm(
    shared_service: ServiceProcess, tmp_path: Path
) -> None:
    script = readme_example().replace("http://127.0.0.1:8080", shared_service.url)
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "elected" in out.read_text(), 30, what="the example elected")
        assert httpx.get(f"{shared_service.url}/v1/leases/nightly-report").json()["held"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.read_text().split()
    assert "ousting" in lines
    assert not httpx.get(f"{shared_service.url}/v1/leases/nightly-report").json()["held"]


def test_value_is_published_and_proclaimed_in_the_same_term(
    electors: Electors, shared_service: ServiceProcess, client: LeaseClient, key: str
) -> None:
    config = Config(term=30, renew=10, retry=0.5)
    elector = electors.new(shared_service.url, key, identity="me", config=config, value="v1")
    follower = electors.new(shared_service.url, key, identity="other", config=config)
    with elector:
        assert elector.wait_for_leadership(20)
        assert elector.lease is not None and elector.lease.value == "v1"
        token = elector.lease.fencing_token
        assert client.get(key).value == "v1"
        with client.watch(key) as events:  # a watcher without renewed=true
            stream = iter(events)
            first = next(stream)
            assert first.replay and first.lease.value == "v1"
            elector.proclaim("v2")  # renewed at once, not after renew=10 s
            told = next(stream)
            assert (told.type, told.lease.value, told.lease.fencing_token) == (
                "renewed",
                "v2",
                token,
            )
        assert client.get(key).value == "v2"
        elector.proclaim("quiet", announce=False)
        wait_until(lambda: client.get(key).value == "quiet", 10, what="the quiet value")
        follower.proclaim("follower's")  # remembered for its next acquire
        with follower:
            elector.stop()
            assert follower.wait_for_leadership(20)
            assert client.get(key).value == "follower's"
            assert client.get(key).fencing_token == token + 1
    with pytest.raises(ValueError, match="4096 bytes"):
        electors.new(shared_service.url, key, value="x" * 4097)
