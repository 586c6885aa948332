"""The elector's decisions as a sans-I/O state machine that both electors drive.

Example::

    machine = Machine("cron", "host-a", Config(term=8, renew=4, retry=2), clock=time.monotonic)
    flow, result = machine.campaign(), None
    while (action := step(flow, result)) is not None:
        result = perform(action)   # the driver's I/O: send a request, wait, call back

Each flow is a generator that yields one ``Action`` at a time and receives its
result: ``Send`` gets the ``Lease`` (or the raised exception), ``Wait`` gets
None when its time came or its condition turned true, ``Call`` gets True (the
callback ran), False (none is set) or what the callback raised. Nothing here
does I/O, sleeps or reads a clock other than the injected one, so the
decisions are the same for ``LeaderElector`` (threads) and
``AsyncLeaderElector`` (tasks) and are tested without either. ``docs/elector.md``
draws the same machine as a table for the SDKs in other languages.

Three flows run side by side, and a driver runs the code between two yields
of any of them under one lock (callbacks included), releasing it only while
it performs a ``BLOCKING`` action; so each transition and its callback are one
step, and ``on_ousting`` can never overtake the ``on_elected`` it follows:

- ``campaign()``: acquire while following, renew while leading, release at the end;
- ``watchdog()``: ends the term at its deadline even while a renew hangs;
- ``follow()``: the key's watch stream; a release or expiry ends a follower's wait.

This is how ``httpx`` drives one auth flow generator from both of its clients.
Rejected: callbacks or a ``Protocol`` of I/O methods that the machine calls
(the machine would have to be written once per colour, sync and async, which
is the duplication this module removes), and a single flow with the deadline
and the watch stream polled in between (a hanging renew would then delay
stepping down, which the deadline exists to prevent).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from leaderelection._election import Clock, Election, Leadership
from leaderelection.config import Config
from leaderelection.errors import PERMANENT, LeaseError, LeaseHeld, LeaseLost, LeaseNotFound
from leaderelection.lease import Lease

log = logging.getLogger("leaderelection")


class StreamEvent(Protocol):
    """What the follower reads of a ``LeaseEvent`` (this module imports no HTTP code)."""

    @property
    def id(self) -> str: ...

    @property
    def free(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Send:
    """Call ``client.<operation>(*args, timeout=timeout)``; the result is its answer."""

    operation: str
    """"acquire", "renew", "release" or "transfer"."""
    args: tuple[str | int | float, ...]
    timeout: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments besides ``timeout`` (the value and whether to announce it)."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Return when ``done()`` is true or the injected clock reaches ``until`` (None: never)."""

    until: float | None
    done: Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Call:
    """Call the elector's ``on_elected``, ``on_ousting`` or ``on_error`` (with ``error``)."""

    callback: str
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Do what the elector's ``cancel()`` does (end the election, close the stream)."""


@dataclass(frozen=True, slots=True)
class OpenWatch:
    """Open the key's watch stream, resuming after ``last_event_id``."""

    last_event_id: str | None


@dataclass(frozen=True, slots=True)
class NextEvent:
    """The stream's next ``LeaseEvent``; None when it ended, the exception if it broke."""


@dataclass(frozen=True, slots=True)
class CloseWatch:
    """Close the watch stream, if one is open."""


Action = Send | Wait | Call | Cancel | OpenWatch | NextEvent | CloseWatch
BLOCKING = (Send, Wait, OpenWatch, NextEvent, CloseWatch)
"""Performed with the driver's lock released (I/O or waiting); the rest under it."""
Result = Lease | StreamEvent | Exception | bool | None
Flow = Generator[Action, Result, None]
ENDS_TERM = (LeaseLost, LeaseNotFound)
"""On renew: another term has the key. Not permanent: campaign again."""


def step(flow: Flow, result: Result) -> Action | None:
    """The flow's next action after ``result``; None when the flow has ended."""
    try:
        return flow.send(result)
    except StopIteration:
        return None


class Machine:
    """One elector's state and every decision of its three flows (see the module docstring)."""

    def __init__(
        self,
        key: str,
        identity: str,
        config: Config,
        clock: Clock,
        rng: random.Random | None = None,
        value: str | None = None,
        limit: int = 1,
    ) -> None:
        self.key = key
        self.identity = identity
        self.config = config
        self.clock = clock
        self.election = Election(config, clock, rng)
        self.stopping = False
        """Set by ``cancel()``: the campaign ends, releasing what it holds."""
        self.done = False
        """The campaign has ended (released): every flow ends."""
        self.woken = False
        """The watch stream saw the lease freed: a waiting follower tries at once."""
        self.refusal: LeaseError | None = None
        """The permanent error that ended the election, if one did."""
        self.value = value
        """What every acquire publishes (``proclaim`` replaces it)."""
        self.limit = limit
        """How many holders the key grants at once: leading is holding one of them."""
        self.announce = False
        self.proclaimed = 0
        """How many times ``proclaim`` was called ..."""
        self.delivered = 0
        """... and how many of those the service has answered (a renew or acquire carried it)."""
        self.successor: str | None = None
        """Set by ``transfer_now``: the campaign ends handing the lease to it, not releasing."""
        self.handed: Lease | None = None
        """What the service answered to that transfer (None: nothing was handed on)."""

    # -- what drivers read (any thread, no lock) ------------------------------------------

    @property
    def leadership(self) -> Leadership | None:
        return self.election.leadership

    def lease(self) -> Lease | None:
        term = self.election.leadership
        return term.lease if term is not None and self.election.is_leader() else None

    def finished(self) -> bool:
        """Nothing more will happen: ``wait_for_leadership`` stops waiting."""
        return self.done or self.stopping

    def cancel(self) -> None:
        self.stopping = True

    def proclaim(self, value: str, announce: bool) -> None:
        """Publish ``value``: the campaign renews with it at once if leading, else the
        next acquire carries it (every acquire carries the latest value anyway)."""
        self.value = value
        self.announce = announce
        self.proclaimed += 1

    def _unsent(self) -> bool:
        return self.proclaimed > self.delivered

    # -- the flows ---------------------------------------------------------------------------

    def campaign(self) -> Flow:
        """Acquire while following, renew while leading; release when stopped."""
        while not self.stopping:
            yield from self._end("deadline")  # a pause or a hung call may have run past it
            if not self.election.active:
                yield from self._acquire()
            elif (wait := self.election.renew_wait()) > 0 and not self._unsent():
                yield Wait(self.clock() + wait, lambda: self.stopping or self._unsent())
            else:
                yield from self._renew()
        yield from self._end("stopped")
        yield from self._release()
        self.done = True

    def watchdog(self) -> Flow:
        """End the open term at its deadline, whatever the campaign is waiting for."""
        while not self.done:
            term = self.election.leadership
            if term is not None and term.active and self.clock() >= term.until:
                yield from self._end("deadline")
                continue
            until = term.until if term is not None and term.active else None
            yield Wait(until, self._changed(term))

    def follow(self) -> Flow:
        """Follow the key's watch stream; a freed lease wakes the waiting follower."""
        last_id: str | None = None
        while not self.stopping:
            yield OpenWatch(last_id)
            event = yield NextEvent()
            while event is not None and not isinstance(event, Exception | bool | Lease):
                last_id = event.id
                if event.free:
                    self.woken = True
                event = yield NextEvent()
            if isinstance(event, LeaseError) or (event is not None and self.stopping):
                log.debug("leaderelection %s: watch stream: %s", self.key, event)
            elif isinstance(event, Exception):
                log.error("leaderelection %s: watch stream failed", self.key, exc_info=event)
            yield CloseWatch()
            # Meanwhile the follower polls every retry; then reconnect where it left off.
            yield Wait(self.clock() + self.config.retry, lambda: self.stopping)

    def stop_now(self) -> Flow:
        """``stop()``: the term ends here and now, before the campaign sends release."""
        self.cancel()
        yield from self._end("stopped")

    def transfer_now(self, to: str) -> Flow:
        """``transfer(to)``: as ``stop()``, but the campaign ends by handing the lease to
        ``to`` (one write ends the term and names it) instead of releasing."""
        if not self.stopping:
            self.successor = to
        yield from self.stop_now()

    # -- the steps of the campaign ----------------------------------------------------------

    def _acquire(self) -> Flow:
        sent, carried = self.clock(), self.proclaimed
        kwargs: dict[str, Any] = {} if self.value is None else {"value": self.value}
        if self.limit != 1:
            kwargs["limit"] = self.limit
        result = yield Send(
            "acquire", (self.key, self.identity, self.config.term), self.config.timeout, kwargs
        )
        error: LeaseError | None = None
        if isinstance(result, Lease):
            self.delivered = max(self.delivered, carried)
            yield from self._granted(result, sent)
            if self.election.active:
                return
        elif isinstance(result, PERMANENT):
            yield from self._refuse(result)
            return
        elif isinstance(result, Exception) and not isinstance(result, LeaseHeld):
            if isinstance(result, LeaseError):
                error = result
            else:  # a bug must not end the loop: report it and retry
                log.error("leaderelection %s: acquire failed", self.key, exc_info=result)
            yield from self._report(result)
        yield Wait(self.clock() + self.election.follower_wait(error), self._wakes)
        self.woken = False

    def _wakes(self) -> bool:
        return self.stopping or self.woken

    def _renew(self) -> Flow:
        term = self.election.leadership
        assert term is not None
        sent, carried = self.clock(), self.proclaimed
        args = (self.key, self.identity, term.lease.fencing_token, self.config.term)
        kwargs: dict[str, Any] = {}
        if self._unsent() and self.value is not None:
            kwargs = {"value": self.value, "announce": self.announce}
        result = yield Send("renew", args, self.election.attempt_timeout(), kwargs)
        if isinstance(result, Lease):
            self.delivered = max(self.delivered, carried)
            yield from self._granted(result, sent)
        elif isinstance(result, ENDS_TERM):
            log.info("leaderelection %s: %s lost the lease: %s", self.key, self.identity, result)
            yield from self._end("lost")
            if self._handed_on(result, term.lease.fencing_token):
                # An operator named a successor of our term: step down (done),
                # then release as stop() does, so that it takes over at once.
                yield from self._release()
        elif isinstance(result, PERMANENT):
            yield from self._refuse(result)
        elif isinstance(result, Exception):
            yield from self._end("deadline")  # say "not leader" before anything else
            self.election.renew_failed()
            if not isinstance(result, LeaseError):
                log.error("leaderelection %s: renew failed", self.key, exc_info=result)
            yield from self._report(result)

    def _handed_on(self, error: LeaseError, token: int) -> bool:
        """The renew's ``lease_lost`` says our term is being handed to a successor."""
        rec = getattr(error, "lease", None)
        return (
            rec is not None
            and rec.holder == self.identity
            and rec.fencing_token == token
            and rec.successor is not None
            and not self.stopping
        )

    def _release(self) -> Flow:
        lease = self.election.last_lease
        if lease is None:
            return
        if self.successor is not None:
            args: tuple[str | int, ...] = (self.key, self.identity, lease.fencing_token)
            result = yield Send("transfer", args, self.config.timeout, {"to": self.successor})
            if isinstance(result, Lease):
                self.handed = result
        else:
            args = (self.key, self.identity, lease.fencing_token)
            result = yield Send("release", args, self.config.timeout)
        if not isinstance(result, Exception) or isinstance(result, ENDS_TERM):
            return  # released, or another term already has it: nothing of ours to release
        if self.refusal is None:
            yield from self._report(result)
        else:  # on_error already had the reason the election ended
            log.warning("leaderelection %s: release failed: %s", self.key, result)

    def _refuse(self, error: LeaseError) -> Flow:
        """A permanent error: the term ends, ``on_error`` once, then as after ``cancel()``."""
        log.info(
            "leaderelection %s: %s refused, ending the election: %s",
            self.key,
            self.identity,
            error,
        )
        self.refusal = error
        yield from self._end("stopped")
        self.cancel()
        yield Cancel()  # the driver's part: close the watch stream, wake its waiters
        yield from self._report(error)

    # -- term changes and callbacks -----------------------------------------------------------

    def _granted(self, lease: Lease, sent_at: float) -> Flow:
        # An answer may arrive after the deadline passed (a pause, a slow
        # answer): that term is over, whatever this answer says.
        yield from self._end("deadline")
        if self.election.granted(lease, sent_at, may_lead=not self.stopping):
            log.info(
                "leaderelection %s: %s elected (token %d)",
                self.key,
                self.identity,
                lease.fencing_token,
            )
            yield from self._callback("on_elected")

    def _end(self, ended_by: str) -> Flow:
        if ended_by == "deadline":
            ended = self.election.expire()
        else:
            ended = self.election.step_down(ended_by)
        if ended is None:
            return
        log.info(
            "leaderelection %s: %s ousting (%s, token %d)",
            self.key,
            self.identity,
            ended_by,
            ended.lease.fencing_token,
        )
        yield from self._callback("on_ousting")

    def _callback(self, name: str) -> Flow:
        raised = yield Call(name)
        if isinstance(raised, Exception):
            log.error("leaderelection %s: callback %s raised", self.key, name, exc_info=raised)
            yield from self._report(raised)

    def _report(self, error: Exception) -> Flow:
        called = yield Call("on_error", error)
        if called is False:
            log.warning("leaderelection %s: %s", self.key, error)
        elif isinstance(called, Exception):
            log.error("leaderelection %s: on_error raised", self.key, exc_info=called)

    def _changed(self, term: Leadership | None) -> Callable[[], bool]:
        """The watchdog's condition: the term it waits on is no longer the current one."""
        return lambda: self.done or self.election.leadership is not term
