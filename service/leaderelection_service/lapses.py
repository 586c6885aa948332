"""When each watched lease lapses: expiry writes nothing, so the hub must look.

Example::

    lapses = Lapses()
    lapses.note("cron", view, now=time.monotonic())   # held for 9.5 s more
    lapses.next()                                     # monotonic time of the first lapse
    lapses.due(time.monotonic())                      # {"cron"} once it has lapsed

One deadline per key, kept in a heap with lazy deletion: a renewal pushes a
new entry and the old one is skipped when it comes up. Re-reading every
watched key on a timer was rejected: over a million keys that is a full
listing per poll, which is the cost the watch hub exists to avoid.
"""

from __future__ import annotations

import heapq
from collections.abc import Container

from leaderelection_service.records import LeaseView

MARGIN = 0.005
"""Seconds after the lapse before looking, so the read sees it lapsed."""


class Lapses:
    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def note(self, key: str, view: LeaseView, now: float) -> None:
        """``view`` was just read: remember when it lapses, if it is held."""
        if not view.held:
            self._at.pop(key, None)
            return
        left = (view.record.free_at(view.allowance) - view.server_time).total_seconds()
        at = now + left + MARGIN
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))

    def due(self, now: float) -> set[str]:
        """Keys whose lease has lapsed by ``now`` (each returned once)."""
        out: set[str] = set()
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self._at.get(key) == at:
                del self._at[key]
                out.add(key)
        return out

    def next(self) -> float:
        """Monotonic time of the next deadline (may be a stale one: a spurious look)."""
        return self._heap[0][0] if self._heap else float("inf")

    def forget(self, key: str) -> None:
        self._at.pop(key, None)

    def keep(self, keys: Container[str]) -> None:
        """Forget every key not in ``keys``."""
        self._at = {k: at for k, at in self._at.items() if k in keys}
        self._heap = [(at, k) for k, at in self._at.items()]
        heapq.heapify(self._heap)

    def clear(self) -> None:
        self._at.clear()
        self._heap.clear()
