"""The elector's state machine, driven by hand: actions out, results in, a fake clock.

No I/O and no threads: each test plays the driver, sending the machine the
answers a service would give and reading the actions it asks for. These are
the rows of docs/elector.md; both electors perform exactly these actions.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from leaderelection import (
    BackendUnavailable,
    Config,
    Forbidden,
    InvalidRequest,
    Lease,
    LeaseHeld,
    LeaseLost,
    TransportError,
    Unauthorized,
)
from leaderelection._machine import (
    Action,
    Call,
    Cancel,
    CloseWatch,
    Flow,
    Machine,
    NextEvent,
    OpenWatch,
    Result,
    Send,
    Wait,
    step,
)
from leaderelection.watch import LeaseEvent

CONFIG = Config(term=10, renew=3, retry=1, margin=1)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lease(token: int = 1, ttl: float = 10.0, holder: str = "me", held: bool = True) -> Lease:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    state = "held" if held else "expired"
    return Lease("k", holder, token, ttl, t, t, t + timedelta(seconds=ttl), 0, held, state, t)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def machine(clock: FakeClock) -> Machine:
    return Machine("k", "me", CONFIG, clock, random.Random(3))


class Driver:
    """Plays one flow: ``expect`` the next action, ``answer`` it."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.action: Action | None = step(flow, None)

    def answer(self, result: Result = None) -> Action | None:
        self.action = step(self.flow, result)
        return self.action

    def calls_until_blocking(self) -> list[str]:
        """Answer every Call with True (the callback ran); the callbacks named, in order."""
        names = []
        while isinstance(self.action, Call):
            names.append(self.action.callback)
            self.answer(True)
        return names


def elect(machine: Machine, clock: FakeClock) -> Driver:
    d = Driver(machine.campaign())
    assert d.action == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)
    d.answer(lease())
    assert d.calls_until_blocking() == ["on_elected"]
    return d


def test_acquire_then_renew_at_the_interval_from_the_send_time(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    term = machine.leadership
    assert term is not None and term.until == 1000 + 10 - 1  # send time + term - margin
    wait = d.action
    assert isinstance(wait, Wait) and wait.until == 1003 and not wait.done()
    clock.now = 1003
    renew = d.answer()
    assert isinstance(renew, Send) and renew.operation == "renew"
    assert renew.args == ("k", "me", 1, 10.0)
    assert renew.timeout <= CONFIG.timeout
    clock.now = 1003.5  # the answer comes later; the deadline counts from the send
    d.answer(lease())
    assert d.calls_until_blocking() == []  # a renewal begins no new term
    assert machine.leadership is not None and machine.leadership.until == 1003 + 9


def test_lease_held_waits_retry_jittered_shorter_and_wakes_on_a_free_event(
    machine: Machine, clock: FakeClock
) -> None:
    d = Driver(machine.campaign())
    wait = d.answer(LeaseHeld("held", status=409))
    assert isinstance(wait, Wait) and wait.until is not None
    assert 1000 + 0.75 <= wait.until <= 1000 + 1.0
    assert not wait.done()
    follow = Driver(machine.follow())
    assert follow.action == OpenWatch(None)
    assert follow.answer() == NextEvent()
    freed = LeaseEvent("released", "k", 2, 2, False, lease(holder="x", held=False), "k:2")
    follow.answer(freed)
    assert wait.done()  # the follower's wait ends at once
    assert d.answer() == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)


def test_a_503_waits_its_retry_after_up_to_one_term(machine: Machine, clock: FakeClock) -> None:
    d = Driver(machine.campaign())
    d.answer(BackendUnavailable("down", status=503, retry_after=4))
    assert d.calls_until_blocking() == ["on_error"]
    assert isinstance(d.action, Wait) and d.action.until == 1004


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("ttl", status=422),
        Unauthorized("no", status=401),
        Forbidden("no", status=403),
    ],
    ids=["422", "401", "403"],
)
def test_a_permanent_error_on_acquire_ends_the_election(
    machine: Machine, clock: FakeClock, error: Exception
) -> None:
    d = Driver(machine.campaign())
    d.answer(error)
    assert d.action == Cancel()
    d.answer()
    assert d.action == Call("on_error", error)
    assert d.answer(True) is None  # nothing held: no release; the flow has ended
    assert machine.done and machine.refusal is error


def test_a_permanent_error_on_renew_steps_down_reports_once_releases(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    d.answer()
    refused = Forbidden("revoked", status=403)
    d.answer(refused)
    assert d.calls_until_blocking() == ["on_ousting"]
    assert d.action == Cancel()
    d.answer()
    assert d.calls_until_blocking() == ["on_error"]
    assert d.action == Send("release", ("k", "me", 1), CONFIG.timeout)
    assert d.answer(Forbidden("revoked", status=403)) is None  # not reported a second time
    term = machine.leadership
    assert term is not None and term.ended_by == "stopped"


def test_lease_lost_on_renew_ends_the_term_and_campaigns_again(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    d.answer()
    d.answer(LeaseLost("taken", status=409))
    assert d.calls_until_blocking() == ["on_ousting"]
    assert machine.leadership is not None and machine.leadership.ended_by == "lost"
    assert d.action == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)  # not on_error


def test_transient_renew_errors_retry_inside_the_deadline(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    d.answer()
    d.answer(TransportError("reset"))
    assert d.calls_until_blocking() == ["on_error"]
    wait = d.action
    assert isinstance(wait, Wait) and wait.until is not None
    assert wait.until > 1003 and wait.until + CONFIG.timeout <= 1009  # one more attempt fits
    assert machine.election.is_leader()


def test_the_watchdog_ends_the_term_at_the_deadline_while_a_renew_hangs(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    assert isinstance(d.answer(), Send)  # the renew is in flight, and hangs
    dog = Driver(machine.watchdog())
    wait = dog.action
    assert isinstance(wait, Wait) and wait.until == 1009
    clock.now = 1009
    dog.answer()
    assert dog.calls_until_blocking() == ["on_ousting"]
    term = machine.leadership
    assert term is not None and term.ended_by == "deadline" and term.until == 1009
    d.answer(lease())  # the late answer: its own deadline (1003 + 9) is still ahead
    assert d.calls_until_blocking() == ["on_elected"]


def test_stop_steps_down_before_the_release_is_sent(machine: Machine, clock: FakeClock) -> None:
    d = elect(machine, clock)
    stop = Driver(machine.stop_now())
    assert stop.calls_until_blocking() == ["on_ousting"] and stop.action is None
    assert not machine.election.is_leader()
    wait = d.action
    assert isinstance(wait, Wait) and wait.done()  # the renew wait ends on stop
    assert d.answer() == Send("release", ("k", "me", 1), CONFIG.timeout)
    assert d.answer(lease(held=False)) is None and machine.done


def test_a_callback_that_raises_goes_to_on_error(machine: Machine, clock: FakeClock) -> None:
    d = Driver(machine.campaign())
    d.answer(lease())
    boom = RuntimeError("boom")
    assert d.action == Call("on_elected")
    assert d.answer(boom) == Call("on_error", boom)
    assert isinstance(d.answer(False), Wait)  # no on_error set: logged, the loop goes on


def test_a_broken_watch_stream_reconnects_after_retry_where_it_left_off(
    machine: Machine, clock: FakeClock
) -> None:
    follow = Driver(machine.follow())
    follow.answer()
    held = LeaseEvent("acquired", "k", 1, 1, True, lease(holder="x"), "k:1")
    follow.answer(held)
    assert not machine.woken  # a held lease wakes nobody
    assert follow.answer(TransportError("reset")) == CloseWatch()
    wait = follow.answer()
    assert isinstance(wait, Wait) and wait.until == 1000 + CONFIG.retry
    assert follow.answer() == OpenWatch("k:1")


def test_proclaim_while_leading_renews_at_once_with_the_value(clock: FakeClock) -> None:
    machine = Machine("k", "me", CONFIG, clock, random.Random(3), value="v1")
    d = Driver(machine.campaign())
    assert d.action == Send("acquire", ("k", "me", 10.0), CONFIG.timeout, {"value": "v1"})
    d.answer(lease())
    assert d.calls_until_blocking() == ["on_elected"]
    wait = d.action
    assert isinstance(wait, Wait) and wait.until == 1003 and not wait.done()
    machine.proclaim("v2", announce=True)
    assert wait.done()  # the campaign's wait ends: no waiting for the next renewal
    renew = d.answer()
    assert renew == Send(
        "renew", ("k", "me", 1, 10.0), renew.timeout, {"value": "v2", "announce": True}
    )
    d.answer(lease())
    plain = d.action
    assert isinstance(plain, Wait) and not plain.done()
    clock.now = 1003
    again = d.answer()
    assert isinstance(again, Send) and again.kwargs == {}  # delivered: renewals carry no value


def test_proclaim_while_following_goes_with_the_next_acquire(
    machine: Machine, clock: FakeClock
) -> None:
    d = Driver(machine.campaign())
    assert d.action == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)
    wait = d.answer(LeaseHeld("held", status=409))
    machine.proclaim("mine", announce=False)
    assert isinstance(wait, Wait) and not wait.done()  # nothing to renew: no early acquire
    clock.now = wait.until or clock.now
    assert d.answer() == Send("acquire", ("k", "me", 10.0), CONFIG.timeout, {"value": "mine"})
    d.answer(lease())
    assert d.calls_until_blocking() == ["on_elected"]
    assert isinstance(d.action, Wait) and not d.action.done()  # the acquire delivered it
