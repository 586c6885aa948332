"""Group commit for the file backend: the writes that arrive together share one sync.

Example::

    commit = GroupCommit(Committer(records_fd, locks_fd))
    await commit.write("cron", "63726f6e", encode(record), expected=3, revision=4)
    # returns once the record is on disk; WriteConflict if the revision on
    # disk was not 3; BackendUnavailable if the disk refused this write or
    # the batch's sync

Writes queue in the event loop (``backends/batching.py``, as PostgreSQL's
batches do). When no batch is running, every queued write (on distinct keys,
at most ``max_batch``) goes to one worker thread as one batch; writes that
arrive meanwhile wait for the next. There is no timer: an idle service
commits a write at once, a busy one commits bigger batches. How one batch is
committed, and which failures fail one write or the whole batch, is in
``committer.py``.

One batch at a time, in one worker thread: the next batch gathers while
this one syncs, and a process's batches never wait on each other's locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from concurrent.futures import Future, ThreadPoolExecutor

from leaderelection_service.backends.batching import Batcher
from leaderelection_service.backends.file.committer import Committer, Pending
from leaderelection_service.lease_errors import BackendUnavailable


class GroupCommit:
    """Gathers writes in the event loop (``backends/batching.py``) and runs each
    batch in the one worker thread: one batch at a time, so batches of this
    process never contend for the keys' locks."""

    def __init__(self, committer: Committer, max_batch: int = 128) -> None:
        self._committer = committer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-commit")
        # One write per key and batch (keyed by file name): the next one sees this one.
        self._batcher: Batcher[Pending, int] = Batcher(
            self._start, key=_file_name, max_batch=max_batch, max_in_flight=1
        )

    @property
    def batches(self) -> int:
        """How many batches ran (for tests)."""
        return self._batcher.batches

    async def write(
        self, key: str, name: str, data: bytes, expected: int | None, revision: int
    ) -> int:
        """``revision`` once ``data`` is durable as the record of ``key``."""
        return await self._batcher.submit(Pending(key, name, data, expected, revision))

    def _start(self, batch: list[Pending]) -> Awaitable[list[int | BaseException]]:
        """Hands ``batch`` to the worker thread now (the batcher awaits the answer)."""
        done = self._executor.submit(self._commit, batch)
        return _answer(batch, done, asyncio.wrap_future(done))

    def _commit(self, batch: list[Pending]) -> list[int | BaseException]:
        """In the worker thread: each write's outcome; a failure common to the
        batch fails every write that has no failure of its own."""
        failure: BaseException | None = None
        try:
            self._committer.commit(batch)
        except Exception as exc:
            failure = exc
        return [
            p.error if p.error is not None else p.revision if failure is None else _own(failure)
            for p in batch
        ]

    async def close(self) -> None:
        await self._batcher.close(_closed)
        self._executor.shutdown(wait=True)


def _file_name(p: Pending) -> str:
    return p.name


async def _answer(
    batch: list[Pending],
    done: Future[list[int | BaseException]],
    answer: Awaitable[list[int | BaseException]],
) -> list[int | BaseException]:
    try:
        return await answer
    except asyncio.CancelledError:
        if done.cancelled():  # the worker thread never ran it: the store closed
            return [_closed() for _ in batch]
        raise


def _closed() -> BackendUnavailable:
    return BackendUnavailable("the file backend is closed", kind="the backend is closed")


def _own(error: BaseException) -> BaseException:
    """A batch's failure, one object per caller (one object raised in many tasks
    would collect all their tracebacks)."""
    if isinstance(error, BackendUnavailable):
        own = BackendUnavailable(error.message, retry_after=error.retry_after, kind=error.kind)
        own.__cause__ = error.__cause__
        return own
    return error
