"""``/readyz``'s check of the backend, shared by every probe for a moment.

Example::

    readiness = Readiness(backend, ttl=1.0)
    failure = await readiness.check()  # None when ready, else the BackendUnavailable

The backend's ``ping`` is the check, and a backend makes it as strong as its
writes need: the file backend writes, syncs and removes a small probe file,
because a full or read-only disk still lets it read every lease (it answered
200 on a full disk while every write failed with 503). A probe costs a write
and a sync, and probes come from many places (a kubelet, a load balancer, a
dashboard, each every second or so), so the outcome is kept for ``ttl``
seconds and concurrent probes wait for the same check: at most one ping per
``ttl`` per process, however many ask.

A ready backend may still not keep the whole contract: a PostgreSQL primary
that streams to standbys asynchronously can lose acknowledged writes on
failover. A backend that can tell offers a ``warning`` attribute (None when
all is well), read after each successful check; ``/readyz`` shows it and the
log says it when it appears and when it clears (``app.py`` runs one check at
start, so it is in the log from the first second).

Rejected: judging readiness by recent write failures. A failure of one write
is now that write's own (a damaged record, a conflict), an idle service has
no writes to judge by, and the first caller after the disk filled would pay
for the news; a probe is one cheap write that tells at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.storage import LeaseBackend

log = logging.getLogger("leaderelection")

TTL = 1.0
"""Seconds a check's outcome answers every probe."""


class Readiness:
    def __init__(
        self,
        backend: LeaseBackend,
        *,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._ttl = ttl
        self._clock = clock
        self._checked_at: float | None = None
        self._outcome: BackendUnavailable | None = None
        self._running: asyncio.Future[BackendUnavailable | None] | None = None
        self.warning: str | None = None
        """The backend's ``warning`` as of the last successful check."""
        self.checks = 0
        """How many pings ran (for tests)."""

    async def check(self) -> BackendUnavailable | None:
        """None when the backend is ready, else why not (the detail is for the log)."""
        if self._checked_at is not None and self._clock() - self._checked_at < self._ttl:
            return self._outcome
        if self._running is None:
            self._running = asyncio.ensure_future(self._ping())
        # A probe that gives up does not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def at_start(self) -> None:
        """One check at start, for the backend's warning in the log.

        Its outcome is not kept for the probes: a backend lost in the first
        second must not be reported ready from the start-up check.
        """
        await self.check()
        self._checked_at = None

    async def _ping(self) -> BackendUnavailable | None:
        self.checks += 1
        outcome: BackendUnavailable | None = None
        try:
            await self._backend.ping()
        except BackendUnavailable as exc:
            outcome = exc
        else:
            self._note(getattr(self._backend, "warning", None))
        finally:
            self._running = None
        self._outcome, self._checked_at = outcome, self._clock()
        return outcome

    def _note(self, warning: str | None) -> None:
        if warning != self.warning:
            if warning is not None:
                log.warning("backend: %s", warning)
            else:
                log.info("backend: the earlier warning no longer holds")
        self.warning = warning
