"""What a process does when its own writes to one key contend: take turns, back off.

Example::

    locks = KeyLocks()
    async with locks.hold("cron"):      # this process's operations on "cron" in turn
        ...
    await asyncio.sleep(backoff(attempt))  # after a lost compare-and-set

Shared by the lease rules over a record store (``lease_rules.CasLeases``) and
the SQL backend's semaphore path (``backends/sql/semaphore_path.py``), which
may not import the rules. Rejected: no local turn-taking, leaving the
compare-and-set alone to order a process's own writes: on a hot key they
lose to each other, burning round trips until the attempts run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

BACKOFF_BASE = 0.001
BACKOFF_CAP = 0.05


def backoff(attempt: int) -> float:
    """Seconds to wait before ``attempt`` (0-based) after losing every earlier one.

    Full jitter, doubling from ``BACKOFF_BASE`` up to ``BACKOFF_CAP``: two
    processes writing one key in step would otherwise keep losing to each
    other (each reads while the other's write is committing) until the
    attempts run out. The first retry goes at once.
    """
    return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


class KeyLocks:
    """One asyncio lock per key in use, dropped when nobody holds or waits for it.

    Within one process, operations on one key take turns instead of racing
    each other's compare-and-set (which would only burn round trips and,
    on a hot key, exhaust the attempts); other processes are still kept
    apart by the compare-and-set itself.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
