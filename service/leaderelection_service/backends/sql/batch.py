"""Concurrent calls folded into one PostgreSQL statement and one commit.

Example::

    renewals = Batcher(run_renewals, max_batch=256, max_in_flight=2)
    row = await renewals.submit(("cron", "host-a", 7, 10_000_000))  # None: not in the answer

Renewals are the bulk of a lease service's traffic (every holder, every few
seconds) and acquires come next (candidates, retried and re-asserted
acquires). Each costs a commit, and commits, not CPU, set the ceiling: one
connection does a few thousand a second. Here a call that arrives while
``max_in_flight`` batches are already running waits for the next batch; that
batch sends every waiting item in one statement (``UPDATE … FROM unnest(…)``,
``INSERT … SELECT FROM unnest(…) ON CONFLICT …``) with the same rules and the
same database clock as the single statement, and each caller gets the answer
for its own key. There is no timer: an idle service sends each call at once,
a busy one sends bigger batches (group commit).

Items are tuples whose first element is the key. A key is in at most one
batch at a time (an ``ON CONFLICT`` may not touch a row twice, and a second
call must see what the first one wrote: the loser of a race for a key is
answered with the winner's record): a call for a key that is already in a
batch, running or being formed, waits for a later one.

The batch runs in a task of its own, so a caller that is cancelled while it
waits (its client went away) never interrupts a statement that others wait
on; a caller already cancelled when its batch is formed is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

Item = TypeVar("Item", bound=tuple[Any, ...])
Result = TypeVar("Result")

BatchRunner = Callable[[list[Item]], Awaitable[Mapping[str, Result]]]
"""Runs one batch statement; returns each answered key's result."""


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Mapping[str, Result]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[Item, asyncio.Future[Result | None]]] = []
        self._in_flight = 0
        self._busy: set[str] = set()  # keys of the batches running now
        self.batches = 0
        """How many batch statements ran (for tests and benchmarks)."""
        self.items = 0
        """How many items they carried."""

    async def submit(self, item: Item) -> Result | None:
        """This item's result, or None when the statement did not answer for its key."""
        done: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._in_flight < self._max_in_flight:
            self._kick()
        return await done

    def _kick(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            batch: list[tuple[Item, asyncio.Future[Result | None]]] = []
            rest: list[tuple[Item, asyncio.Future[Result | None]]] = []
            busy = self._busy
            for entry in self._queue:
                item, done = entry
                if done.done():  # the caller was cancelled: leave it out
                    continue
                if item[0] in busy or len(batch) >= self._max_batch:
                    rest.append(entry)
                else:
                    busy.add(item[0])
                    batch.append(entry)
            self._queue = rest
            if not batch:
                return
            self._in_flight += 1
            self.batches += 1
            self.items += len(batch)
            asyncio.get_running_loop().create_task(self._flush(batch))

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result | None]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except BaseException as exc:
            for _, done in batch:
                if done.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    done.cancel()
                else:
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for item, done in batch:
                if not done.done():
                    done.set_result(results.get(item[0]))
        finally:
            self._in_flight -= 1
            for item, _ in batch:
                self._busy.discard(item[0])
            self._kick()
