"""The election's timing, with no I/O: what the sync and async electors share.

Example::

    election = Election(Config(term=10, renew=3, retry=1), clock=time.monotonic)
    sent = clock(); lease = client.acquire(key, me, election.config.term)
    if election.granted(lease, sent):       # True: a new term began
        on_elected(...)
    election.renew_wait()                   # seconds until the next renew is due
    ended = election.expire()               # the term, if its deadline has passed

Every time is the injected monotonic ``clock``; the service's clock is never
used to decide leadership. The electors call these methods under their
transition lock, so a term's start, its renewals and its end are one sequence.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from leaderelection.config import MIN_TIMEOUT, Config
from leaderelection.errors import BackendUnavailable, LeaseError
from leaderelection.lease import Lease

Clock = Callable[[], float]


def default_identity() -> str:
    """``hostname-pid-random``: unique per process, readable in the dashboard."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Leadership:
    """One term of this elector's leadership, as its own monotonic clock saw it.

    Example::

        term = elector.leadership
        if term and term.active:
            seconds_left = term.until - time.monotonic()
    """

    lease: Lease
    """The latest lease the service granted in this term (renewals update it)."""
    since: float
    """Monotonic time at which this elector started leading."""
    until: float
    """While active, the local deadline (send time + ``config.term``, the configured
    duration, - margin); after the term ended, the moment it ended (never later
    than the deadline)."""
    active: bool
    ended_by: str | None = None
    """Why it ended: "deadline", "lost" or "stopped"; None while active."""


class Election:
    """The state and timing rules of one elector (single-threaded: callers lock)."""

    def __init__(self, config: Config, clock: Clock, rng: random.Random | None = None) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.leadership: Leadership | None = None
        self.last_lease: Lease | None = None
        """The last lease granted to us, even after we stepped down (to release)."""
        self.next_renew = 0.0

    # -- what the outside reads ---------------------------------------------------

    def is_leader(self, now: float | None = None) -> bool:
        term = self.leadership
        if term is None or not term.active:
            return False
        return (self.clock() if now is None else now) < term.until

    @property
    def active(self) -> bool:
        """A term is open (its deadline may have passed; ``expire`` closes it)."""
        return self.leadership is not None and self.leadership.active

    # -- transitions --------------------------------------------------------------

    def deadline(self, lease: Lease, sent_at: float) -> float:
        # The service started its ttl no earlier than we sent the request, so
        # sent_at + ttl is no later than its expiry; the margin absorbs clock-rate
        # drift and the time the application needs to stop.
        return sent_at + min(self.config.term, lease.ttl) - self.config.margin

    def granted(self, lease: Lease, sent_at: float, *, may_lead: bool = True) -> bool:
        """Record a successful acquire or renew sent at ``sent_at``.

        Returns True when this begins a new term (call ``on_elected``). An answer
        that arrives after its own deadline, or while stopping (``may_lead``
        False), begins nothing, but the lease is remembered so it can be released.
        """
        self.last_lease = lease
        now = self.clock()
        deadline = self.deadline(lease, sent_at)
        self.next_renew = sent_at + self.config.renew
        term = self.leadership
        if term is not None and term.active:
            # A renewal: same token (acquire is only sent while no term is open).
            self.leadership = replace(term, lease=lease, until=max(term.until, deadline))
            return False
        if not may_lead or deadline <= now:
            return False
        self.leadership = Leadership(lease=lease, since=now, until=deadline, active=True)
        return True

    def step_down(self, ended_by: str) -> Leadership | None:
        """Close the open term now (or at its deadline if that passed); the ended term."""
        term = self.leadership
        if term is None or not term.active:
            return None
        ended = replace(term, active=False, until=min(self.clock(), term.until), ended_by=ended_by)
        self.leadership = ended
        return ended

    def expire(self) -> Leadership | None:
        """Close the open term if its deadline has passed; the ended term."""
        term = self.leadership
        if term is not None and term.active and self.clock() >= term.until:
            ended = replace(term, active=False, ended_by="deadline")
            self.leadership = ended
            return ended
        return None

    # -- timing decisions ------------------------------------------------------------

    def renew_wait(self) -> float:
        """Seconds until the next renew attempt is due."""
        return max(0.0, self.next_renew - self.clock())

    def attempt_timeout(self) -> float:
        """HTTP timeout of the next renew: never past the deadline."""
        term = self.leadership
        remaining = term.until - self.clock() if term is not None else self.config.timeout
        return max(MIN_TIMEOUT, min(self.config.timeout, remaining))

    def renew_failed(self) -> float:
        """Schedule the next renew after a transient failure; the seconds to wait.

        With jitter, and short enough that one more full-length attempt still fits
        before the deadline when it can; never a busy loop.
        """
        term = self.leadership
        now = self.clock()
        remaining = term.until - now if term is not None else 0.0
        room = remaining - self.config.timeout
        if room > 0:
            wait = self.rng.uniform(0.5, 1.0) * min(self.config.retry, room)
        else:
            wait = min(max(remaining, 0.0), max(MIN_TIMEOUT, self.config.timeout / 10))
        self.next_renew = now + wait
        return wait

    def follower_wait(self, error: LeaseError | None = None) -> float:
        """Seconds a follower waits before its next acquire attempt.

        ``retry`` shortened by up to a quarter (jitter never lengthens it, so a
        released lease is taken within ``retry``); a 503's Retry-After is honoured
        up to one term.
        """
        wait = self.config.retry * self.rng.uniform(0.75, 1.0)
        if isinstance(error, BackendUnavailable):
            wait = max(wait, min(error.retry_after, self.config.term))
        return wait
