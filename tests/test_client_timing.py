"""The election's timing rules, with an injected clock (no I/O, no threads)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from leaderelection import BackendUnavailable, Config, Lease
from leaderelection._election import Election


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lease(token: int = 1, ttl: float = 10.0) -> Lease:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return Lease("k", "me", token, ttl, t, t, t + timedelta(seconds=ttl), 0, True, "held", t)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def election(clock: FakeClock) -> Election:
    return Election(Config(term=10, renew=3, retry=1, margin=1), clock, random.Random(7))


def test_deadline_counts_from_send_time_not_answer_time(
    election: Election, clock: FakeClock
) -> None:
    sent = clock.now
    clock.now += 2.0  # a slow answer
    assert election.granted(lease(), sent)
    term = election.leadership
    assert term is not None and term.active
    assert term.until == sent + 10 - 1
    assert term.since == clock.now


def test_is_leader_turns_false_at_the_deadline_without_any_call(
    election: Election, clock: FakeClock
) -> None:
    election.granted(lease(), clock.now)
    clock.now += 8.999
    assert election.is_leader()
    clock.now += 0.001
    assert not election.is_leader()
    assert election.active  # the term is still open until someone closes it...
    ended = election.expire()  # ...which reports when it ended: at the deadline
    assert ended is not None and ended.ended_by == "deadline" and not ended.active
    assert ended.until == 1009.0


def test_server_ttl_shorter_than_asked_shortens_the_deadline(
    election: Election, clock: FakeClock
) -> None:
    election.granted(lease(ttl=4.0), clock.now)
    assert election.leadership is not None
    assert election.leadership.until == clock.now + 4 - 1


def test_renewal_moves_deadline_and_keeps_since(election: Election, clock: FakeClock) -> None:
    election.granted(lease(), clock.now)
    since = election.leadership.since if election.leadership else None
    assert election.renew_wait() == 3.0
    clock.now += 3
    assert not election.granted(lease(), clock.now)  # not a new term
    assert election.leadership is not None
    assert election.leadership.since == since
    assert election.leadership.until == 1003 + 9
    assert election.renew_wait() == 3.0


def test_answer_after_its_own_deadline_begins_nothing(election: Election, clock: FakeClock) -> None:
    sent = clock.now
    clock.now += 9.5
    assert not election.granted(lease(), sent)
    assert not election.is_leader()
    assert election.last_lease is not None  # remembered, to be released


def test_answer_while_stopping_begins_nothing(election: Election, clock: FakeClock) -> None:
    assert not election.granted(lease(), clock.now, may_lead=False)
    assert election.leadership is None and election.last_lease is not None


def test_step_down_ends_now_or_at_the_deadline_whichever_first(
    election: Election, clock: FakeClock
) -> None:
    election.granted(lease(), clock.now)
    clock.now += 2
    ended = election.step_down("stopped")
    assert ended is not None and ended.until == 1002 and ended.ended_by == "stopped"
    assert election.step_down("stopped") is None  # once
    election.granted(lease(2), clock.now)
    clock.now += 60  # paused far past the deadline
    ended = election.step_down("lost")
    assert ended is not None and ended.until == 1002 + 9


def test_failed_renew_backs_off_with_jitter_and_leaves_room_for_another_attempt(
    election: Election, clock: FakeClock
) -> None:
    election.granted(lease(), clock.now)
    clock.now += 3
    timeout = election.config.timeout
    for _ in range(50):
        wait = election.renew_failed()
        assert 0 < wait <= election.config.retry
        assert clock.now + wait + timeout <= 1009
    clock.now = 1009 - timeout / 2  # no room for a full attempt: short waits, never zero
    wait = election.renew_failed()
    assert 0 < wait <= timeout / 2
    assert election.attempt_timeout() <= timeout / 2 + 1e-9


def test_follower_waits_at_most_retry_and_honours_retry_after(election: Election) -> None:
    waits = [election.follower_wait() for _ in range(200)]
    assert all(0.75 <= w <= 1.0 for w in waits)
    assert len(set(waits)) > 100  # jittered
    busy = BackendUnavailable("down", status=503, retry_after=4)
    assert election.follower_wait(busy) == 4
    busy = BackendUnavailable("down", status=503, retry_after=3600)
    assert election.follower_wait(busy) == election.config.term
