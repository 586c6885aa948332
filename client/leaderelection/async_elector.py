"""``AsyncLeaderElector``: the asyncio twin of ``LeaderElector``.

Example::

    async with AsyncLeaseClient("http://127.0.0.1:8080") as client:
        elector = AsyncLeaderElector(client, "cron", config=Config(term=8, renew=4, retry=2))
        elector.on_elected = lambda me, cancel: print(me, "elected")
        async with elector:                       # start(); on exit stop()
            await elector.run_while_leader(work)  # work() runs only while leading

The loop is the one in ``leaderelection.elector`` (numbered there), as two
tasks: one campaigns and renews, one watches the deadline, so a hanging renew
does not delay stepping down; with ``watch=True`` (the default) a third
follows the key's watch stream and wakes a waiting follower on a release or
expiry. Callbacks may be plain functions or coroutine
functions; they run one at a time, in order, and are awaited under the
elector's transition lock: return quickly. ``is_leader`` compares the deadline
with the clock on every call, so it is right even while the event loop is
blocked by other code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from leaderelection._election import Clock, Election, Leadership, default_identity
from leaderelection.client import AsyncLeaseClient
from leaderelection.config import Config
from leaderelection.elector import Cancel, check_key
from leaderelection.errors import PERMANENT, LeaseError, LeaseHeld, LeaseLost, LeaseNotFound
from leaderelection.lease import Lease

log = logging.getLogger("leaderelection")

AsyncOnElected = Callable[[str, Cancel], object | Awaitable[object]]
"""``on_elected(identity, cancel)`` / ``on_ousting``: a function or a coroutine function."""
AsyncOnError = Callable[[str, Exception, Cancel], object | Awaitable[object]]


class AsyncLeaderElector:
    """Runs the election for ``key`` over an ``AsyncLeaseClient``, as asyncio tasks."""

    def __init__(
        self,
        client: AsyncLeaseClient,
        key: str,
        *,
        identity: str | None = None,
        config: Config | None = None,
        on_elected: AsyncOnElected | None = None,
        on_ousting: AsyncOnElected | None = None,
        on_error: AsyncOnError | None = None,
        clock: Clock = time.monotonic,
        watch: bool = True,
    ) -> None:
        self.client = client
        self.watch = watch
        self.key = check_key(key)
        self.identity = identity or default_identity()
        self.config = config or Config()
        self.on_elected = on_elected
        self.on_ousting = on_ousting
        self.on_error = on_error
        self._clock = clock
        self._election = Election(self.config, clock)
        self._transition = asyncio.Lock()
        self._changed = asyncio.Event()  # replaced by a fresh one after every change
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._follower: asyncio.Task[None] | None = None
        self._done = False
        self._refusal: LeaseError | None = None  # the permanent error that ended the election

    # -- what callers read --------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True only while a term is open and the clock is before its deadline."""
        return self._election.is_leader()

    @property
    def lease(self) -> Lease | None:
        """The current term's lease (``fencing_token``), or None when not leading."""
        term = self._election.leadership
        return term.lease if term is not None and self.is_leader else None

    @property
    def leadership(self) -> Leadership | None:
        """The current or last term (monotonic start, deadline or end), None before any."""
        return self._election.leadership

    async def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Wait until this elector leads (True), or the election ends or ``timeout`` passes."""
        end = None if timeout is None else self._clock() + timeout
        while not self.is_leader:
            if self._done or self._stopping.is_set():
                return False
            changed = self._changed
            remaining = None if end is None else end - self._clock()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start campaigning as tasks of the running loop; returns at once."""
        if self._tasks:
            raise RuntimeError("this elector was already started")
        self._tasks = [
            asyncio.create_task(self._run(), name=f"leaderelection-{self.key}"),
            asyncio.create_task(self._watch(), name=f"leaderelection-{self.key}-deadline"),
        ]
        if self.watch:
            self._follower = asyncio.create_task(
                self._follow(), name=f"leaderelection-{self.key}-follow"
            )

    def cancel(self) -> None:
        """End the election without waiting (safe from callbacks); the loop releases."""
        self._stopping.set()
        self._wake.set()
        self._notify()

    async def stop(self) -> None:
        """End the election: step down now, release the lease, wait for the tasks.

        From a callback it does not wait.
        """
        self.cancel()
        if asyncio.current_task() in self._tasks:
            return
        await self._end_term("stopped")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run_while_leader(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``await fn()`` as a task while leading; cancel it when the term ends.

        Example::

            async def work() -> None:
                while True:
                    await do_one_step(fencing_token=elector.lease.fencing_token)

            await elector.run_while_leader(work)     # returns when the election ends

        A new task is started for each term. If ``fn`` returns early, the next
        one waits for the next term; an exception from ``fn`` propagates (the
        election goes on). Starts the elector if needed.
        """
        if not self._tasks:
            await self.start()
        while await self.wait_for_leadership():
            lost = self._lost
            work = asyncio.ensure_future(fn())
            ended = asyncio.create_task(lost.wait())
            try:
                await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not work.done():
                    work.cancel()
                    await asyncio.wait({work})
                ended.cancel()
            if not work.cancelled():
                work.result()  # re-raise what fn raised
            await lost.wait()

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                await self._end_term("deadline")
                if not self._election.active:
                    await self._acquire_step()
                    continue
                wait = self._election.renew_wait()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), wait)
                    continue
                await self._renew_step()
        finally:
            await self._shutdown()

    async def _acquire_step(self) -> None:
        error: LeaseError | None = None
        sent = self._clock()
        try:
            lease = await self.client.acquire(
                self.key, self.identity, self.config.term, timeout=self.config.timeout
            )
        except LeaseHeld:
            pass
        except PERMANENT as exc:
            await self._refused(exc)
            return
        except LeaseError as exc:
            error = exc
            await self._report(exc)
        except Exception as exc:
            log.exception("leaderelection %s: acquire failed", self.key)
            await self._report(exc)
        else:
            await self._begin(lease, sent)
            if self._election.active:
                return
        await self._wait_before_retry(self._election.follower_wait(error))

    async def _renew_step(self) -> None:
        term = self._election.leadership
        assert term is not None
        sent = self._clock()
        try:
            lease = await self.client.renew(
                self.key,
                self.identity,
                term.lease.fencing_token,
                self.config.term,
                timeout=self._election.attempt_timeout(),
            )
        except (LeaseLost, LeaseNotFound) as exc:
            log.info("leaderelection %s: %s lost the lease: %s", self.key, self.identity, exc)
            await self._end_term("lost")
        except PERMANENT as exc:
            await self._refused(exc)
        except Exception as exc:
            await self._end_term("deadline")  # say "not leader" before anything else
            async with self._transition:
                self._election.renew_failed()
            if not isinstance(exc, LeaseError):
                log.exception("leaderelection %s: renew failed", self.key)
            await self._report(exc)
        else:
            await self._begin(lease, sent)

    async def _wait_before_retry(self, timeout: float) -> None:
        """The one place a follower waits between acquire attempts.

        Returns early when ``_wake`` is set: by ``cancel()``, and (the seam for
        the watch stream) by whoever learns that the lease was released or expired.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _follow(self) -> None:
        """Wake the follower when the watch stream says the lease is free."""
        last_id: str | None = None
        while not self._stopping.is_set():
            try:
                async with self.client.watch(self.key, last_event_id=last_id) as stream:
                    async for event in stream:
                        last_id = event.id
                        if event.free:
                            self._wake.set()
            except LeaseError as exc:
                log.debug("leaderelection %s: watch stream: %s", self.key, exc)
            except Exception:
                log.exception("leaderelection %s: watch stream failed", self.key)
            with contextlib.suppress(TimeoutError):  # meanwhile the follower polls every retry
                await asyncio.wait_for(self._stopping.wait(), self.config.retry)

    async def _shutdown(self) -> None:
        try:
            await self._end_term("stopped")
            lease = self._election.last_lease
            if lease is not None:
                try:
                    await self.client.release(
                        self.key, self.identity, lease.fencing_token, timeout=self.config.timeout
                    )
                except (LeaseLost, LeaseNotFound):
                    pass
                except Exception as exc:
                    if self._refusal is None:
                        await self._report(exc)
                    else:  # on_error already had the reason the election ended
                        log.warning("leaderelection %s: release failed: %s", self.key, exc)
        finally:
            self._done = True
            self._notify()

    async def _watch(self) -> None:
        while not self._done:
            changed = self._changed
            term = self._election.leadership
            wait = None
            if term is not None and term.active:
                wait = term.until - self._clock()
                if wait <= 0:
                    await self._end_term("deadline")
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    # -- term changes and callbacks ---------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _begin(self, lease: Lease, sent_at: float) -> None:
        async with self._transition:
            # An answer may arrive after the deadline passed (a pause, a slow
            # answer): that term is over, whatever this answer says.
            await self._close_term("deadline")
            began = self._election.granted(lease, sent_at, may_lead=not self._stopping.is_set())
            if began:
                self._lost = asyncio.Event()
            self._notify()
            if began:
                log.info(
                    "leaderelection %s: %s elected (token %d)",
                    self.key,
                    self.identity,
                    lease.fencing_token,
                )
                if self.on_elected is not None:
                    await self._call(self.on_elected)

    async def _end_term(self, ended_by: str) -> None:
        async with self._transition:
            await self._close_term(ended_by)

    async def _close_term(self, ended_by: str) -> None:
        # The caller holds the transition lock (asyncio.Lock is not reentrant).
        if ended_by == "deadline":
            ended = self._election.expire()
        else:
            ended = self._election.step_down(ended_by)
        if ended is None:
            return
        self._lost.set()
        self._notify()
        log.info(
            "leaderelection %s: %s ousting (%s, token %d)",
            self.key,
            self.identity,
            ended_by,
            ended.lease.fencing_token,
        )
        if self.on_ousting is not None:
            await self._call(self.on_ousting)

    async def _call(self, callback: AsyncOnElected) -> None:
        try:
            result = callback(self.identity, self.cancel)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.exception("leaderelection %s: callback %r raised", self.key, callback)
            await self._report(exc)

    async def _refused(self, error: LeaseError) -> None:
        """A permanent error (``errors.PERMANENT``): report it once, end the election."""
        log.info(
            "leaderelection %s: %s refused, ending the election: %s", self.key, self.identity, error
        )
        self._refusal = error
        await self._end_term("stopped")  # before on_error, as after cancel(): not leader first
        self.cancel()
        await self._report(error)

    async def _report(self, error: Exception) -> None:
        callback = self.on_error
        if callback is None:
            log.warning("leaderelection %s: %s", self.key, error)
            return
        try:
            result = callback(self.identity, error, self.cancel)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("leaderelection %s: on_error raised", self.key)
