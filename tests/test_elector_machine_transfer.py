"""The elector's state machine and rule "transfer", driven by hand (no I/O, a fake clock).

``elector.transfer(to)`` is ``stop()`` that ends with a transfer instead of a
release; a renew refused because an operator named a successor of our term
steps down and releases at once, as after ``stop()``. The drivers of both
electors perform exactly these actions (tests/test_elector_transfer.py runs
them against a real service).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from test_elector_machine import CONFIG, Driver, FakeClock, elect, lease

from leaderelection import LeaseLost
from leaderelection._elector_base import check_successor
from leaderelection._machine import Machine, Send, Wait


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def machine(clock: FakeClock) -> Machine:
    return Machine("k", "me", CONFIG, clock, random.Random(3))


def test_transfer_steps_down_then_hands_the_lease_on_instead_of_releasing(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    t = Driver(machine.transfer_now("next"))
    assert t.calls_until_blocking() == ["on_ousting"] and t.action is None
    assert not machine.election.is_leader()  # not leader before the request is sent
    wait = d.action
    assert isinstance(wait, Wait) and wait.done()
    sent = d.answer()
    assert sent == Send("transfer", ("k", "me", 1), CONFIG.timeout, {"to": "next"})
    handed = replace(lease(held=False), state="released", successor="next")
    assert d.answer(handed) is None and machine.done
    assert machine.handed == handed


def test_transfer_when_the_term_is_already_over_hands_nothing(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    Driver(machine.transfer_now("next")).calls_until_blocking()
    d.answer()
    assert d.answer(LeaseLost("another term", status=409)) is None  # not reported
    assert machine.done and machine.handed is None


def test_transfer_after_stop_is_a_plain_stop(machine: Machine, clock: FakeClock) -> None:
    d = elect(machine, clock)
    Driver(machine.stop_now()).calls_until_blocking()
    assert Driver(machine.transfer_now("next")).calls_until_blocking() == []
    assert d.answer() == Send("release", ("k", "me", 1), CONFIG.timeout)


def test_lease_lost_naming_a_successor_steps_down_and_releases_at_once(
    machine: Machine, clock: FakeClock
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    d.answer()
    ours = replace(lease(), successor="next")  # still our term, being handed on
    d.answer(LeaseLost("handed to 'next'", status=409, lease=ours))
    assert d.calls_until_blocking() == ["on_ousting"]
    assert machine.leadership is not None and machine.leadership.ended_by == "lost"
    assert d.action == Send("release", ("k", "me", 1), CONFIG.timeout)
    freed = replace(lease(held=False), state="released", successor="next")
    # released: the elector campaigns on as a follower (the successor has the window)
    assert d.answer(freed) == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)
    assert not machine.done


@pytest.mark.parametrize(
    "record",
    [
        None,
        replace(lease(token=2, holder="other"), successor="next"),  # another term's
        lease(),  # no successor: plainly lost, nothing to release
    ],
    ids=["no-record", "another-term", "no-successor"],
)
def test_other_lease_lost_answers_release_nothing(
    machine: Machine, clock: FakeClock, record: object
) -> None:
    d = elect(machine, clock)
    clock.now = 1003
    d.answer()
    d.answer(LeaseLost("lost", status=409, lease=record))  # type: ignore[arg-type]
    assert d.calls_until_blocking() == ["on_ousting"]
    assert d.action == Send("acquire", ("k", "me", 10.0), CONFIG.timeout)


@pytest.mark.parametrize("to", ["", "me", "a\nb", "x" * 257])
def test_a_successor_is_another_candidates_name(to: str) -> None:
    with pytest.raises(ValueError):
        check_successor(to, "me")
