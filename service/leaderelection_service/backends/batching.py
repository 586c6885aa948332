"""Concurrent calls gathered into batches: one run per batch, each caller its own answer.

Example::

    async def run(items: list[tuple[str, int]]) -> list[int | BaseException]:
        ...  # one statement, one commit, one sync for the whole batch

    renewals = Batcher(run, key=lambda item: item[0], max_batch=256, max_in_flight=2)
    answer = await renewals.submit(("cron", 7))  # this item's outcome

Both backends that write in batches use it: PostgreSQL folds acquires and
renewals into one statement (``backends/sql/postgresql.py``), the file
backend commits writes with one sync (``backends/file/group_commit.py``).
Commits, not CPU, set the ceiling of both, so the writes that arrive together
share one. There is no timer: a call that arrives while fewer than
``max_in_flight`` batches run starts a batch at once; one that arrives while
they all run waits, and the next batch takes every waiting call (at most
``max_batch``). An idle service sends each call alone, a busy one sends
bigger batches (group commit).

The rules, the same for every backend:

- Calls are taken in the order they arrived; the runner answers with one
  outcome per item, in the items' order: a result, or the exception that
  fails that item alone (one write's failure is its own: isolation, I4).
- An exception raised by the runner fails every caller of that batch with
  that exception (the batch as a whole did not happen, or its answer was
  lost).
- ``key(item)`` names what an item writes. A key is in at most one batch at
  a time, running or being formed: a second call for it waits for a later
  batch, so it sees what the first one wrote (a statement's ``ON CONFLICT``
  may not touch a row twice; a file is locked once per batch).
- The runner is called when its batch is formed, before the call that formed
  it returns: a runner that hands the batch to a thread starts it at once.
  What it returns is awaited in a task of its own, so a caller cancelled
  while its batch runs (its client went away) never interrupts the batch
  others wait on; a caller already cancelled when its batch is formed is
  left out of it.
- ``close`` fails the waiting calls and every later one with the error it is
  given, and returns when the running batches have ended.

Rejected: a timer that waits a few milliseconds to gather a batch (adds that
latency to an idle service, and the commit's own duration already gathers
the next batch); a queue with consumer tasks (one more hop per call, and
cancellation rules spread over two places).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, Never, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

Runner = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]
"""Runs one batch; answers one outcome per item, in order (an exception fails its item)."""


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        key: Callable[[Item], Hashable],
        max_batch: int,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError(f"max_batch {max_batch} and max_in_flight {max_in_flight}: both >= 1")
        self._run = run
        self._key = key
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._busy: set[Hashable] = set()  # keys of the batches running or being formed
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed: Callable[[], BaseException] | None = None
        self.batches = 0
        """How many batches ran (for tests and benchmarks)."""
        self.items = 0
        """How many items they carried."""

    async def submit(self, item: Item) -> Result:
        """This item's outcome: its result, or its own or its batch's exception raised."""
        if self._closed is not None:
            raise self._closed()
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._in_flight < self._max_in_flight:
            self._kick()
        return await done

    def _kick(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            batch: list[tuple[Item, asyncio.Future[Result]]] = []
            rest: list[tuple[Item, asyncio.Future[Result]]] = []
            busy = self._busy
            for entry in self._queue:
                item, done = entry
                if done.done():  # the caller was cancelled: leave it out
                    continue
                key = self._key(item)
                if key in busy or len(batch) >= self._max_batch:
                    rest.append(entry)
                else:
                    busy.add(key)
                    batch.append(entry)
            self._queue = rest
            if not batch:
                return
            self._in_flight += 1
            self._idle.clear()
            self.batches += 1
            self.items += len(batch)
            try:
                running = self._run([item for item, _ in batch])
            except Exception as exc:  # a runner that failed before it could start
                running = _raise(exc)
            task = asyncio.get_running_loop().create_task(self._flush(batch, running))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(
        self,
        batch: list[tuple[Item, asyncio.Future[Result]]],
        running: Awaitable[Sequence[Result | BaseException]],
    ) -> None:
        try:
            outcomes = await running
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} answered {len(outcomes)} outcomes")
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
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its caller was cancelled while the batch ran
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
        finally:
            self._in_flight -= 1
            for item, _ in batch:
                self._busy.discard(self._key(item))
            if self._in_flight == 0:
                self._idle.set()
            self._kick()

    async def close(self, error: Callable[[], BaseException]) -> None:
        """Fail the waiting calls and later ones with ``error()`` (one each); await the running."""
        self._closed = error
        queue, self._queue = self._queue, []
        for _, done in queue:
            if not done.done():
                done.set_exception(error())
        await self._idle.wait()


async def _raise(exc: Exception) -> Never:
    raise exc
