"""A change signal that carries the keys that changed, when they are known.

Example::

    changes = Changes()
    changes.fire(["jobs.a"])            # this process wrote jobs.a
    changes.fire()                      # something changed; which keys is not known
    keys = await changes.wait(5.0)      # None: unknown (re-read everything watched)
    keys = await changes.wait(5.0)      # frozenset(): nothing was told within 5 s

``wait`` returns what was fired since it last returned: the union of the
keys, or None once any ``fire`` did not say which keys (or more than
``MAX_KEYS`` piled up, so a burst cannot grow memory). So a change fired
while the one watcher was busy re-reading is never lost: it comes with the
next ``wait``. A bare event (the earlier design) was rejected because it
forces the watcher to re-read everything it watches on every write, which is
a full listing per change over a million keys.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

MAX_KEYS = 10_000
"""Keys kept between two waits; beyond, the signal says "unknown" (None)."""


class Changes:
    """Every waiter wakes on the next ``fire``; ``wait`` returns at once when a
    ``fire`` came since the last ``wait`` returned."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._fired = 0
        self._seen = 0
        self._keys: set[str] | None = set()

    def fire(self, keys: Iterable[str] | None = None) -> None:
        """Some keys changed: ``keys``, or None when which ones is not known."""
        if keys is None or self._keys is None:
            self._keys = None
        else:
            self._keys.update(keys)
            if len(self._keys) > MAX_KEYS:
                self._keys = None
        self._fired += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> frozenset[str] | None:
        """The keys fired since the last return (None: unknown); after ``timeout``, none."""
        if self._fired == self._seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._seen = self._fired
        keys, self._keys = self._keys, set()
        return None if keys is None else frozenset(keys)
