"""``AsyncLeaderElector``: the asyncio twin of ``LeaderElector``.

Example::

    async with AsyncLeaseClient("http://127.0.0.1:8080") as client:
        elector = AsyncLeaderElector(client, "cron", config=Config(term=8, renew=4, retry=2))
        elector.on_elected = lambda me, cancel: print(me, "elected")
        async with elector:                       # start(); on exit stop()
            await elector.run_while_leader(work)  # work() runs only while leading

The loop is the one in ``leaderelection.elector`` (numbered there): both
electors drive the same sans-I/O state machine (``leaderelection._machine``,
drawn as a table in docs/elector.md), here as tasks: one campaigns and renews,
one watches the deadline, so a hanging renew does not delay stepping down;
with ``watch=True`` (the default) a third follows the key's watch stream and
wakes a waiting follower on a release or expiry. ``cancel()`` ends that task
at once, closing its stream. Callbacks may be plain functions or coroutine
functions; they run one at a time, in order, and are awaited under the
elector's transition lock: return quickly. ``is_leader`` compares the deadline
with the clock on every call, so it is right even while the event loop is
blocked by other code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self

from leaderelection import _machine
from leaderelection._elector_base import Cancel, ElectorBase, check_successor
from leaderelection.client import AsyncLeaseClient
from leaderelection.lease import Lease
from leaderelection.watch import AsyncWatch, LeaseEvent

AsyncOnElected = Callable[[str, Cancel], object | Awaitable[object]]
"""``on_elected(identity, cancel)`` / ``on_ousting``: a function or a coroutine function."""
AsyncOnError = Callable[[str, Exception, Cancel], object | Awaitable[object]]


class AsyncLeaderElector(ElectorBase[AsyncLeaseClient, AsyncOnElected, AsyncOnError]):
    """Runs the election for ``key`` over an ``AsyncLeaseClient``, as asyncio tasks.

    Takes the arguments of ``LeaderElector``; callbacks may be coroutine functions.
    """

    def _setup(self) -> None:
        self._lock = asyncio.Lock()  # held while the machine decides and a callback runs
        self._changed = asyncio.Event()  # replaced by a fresh one after every step
        self._lost = asyncio.Event()
        self._lost.set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stream: AsyncWatch | None = None
        self._events: AsyncIterator[LeaseEvent] | None = None

    async def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Wait until this elector leads (True), or the election ends or ``timeout`` passes."""
        machine = self._machine
        end = None if timeout is None else self._clock() + timeout
        await self._wait(_machine.Wait(end, lambda: self.is_leader or machine.finished()))
        return self.is_leader

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start campaigning as tasks of the running loop; returns at once."""
        if self._tasks:
            raise RuntimeError("this elector was already started")
        machine = self._machine
        flows = {"": machine.campaign(), "-deadline": machine.watchdog()}
        if self.watch:
            flows["-follow"] = machine.follow()
        for suffix, flow in flows.items():
            name = f"leaderelection-{self.key}{suffix}"
            driver = self._follow(flow) if suffix == "-follow" else self._drive(flow)
            self._tasks[suffix] = asyncio.create_task(driver, name=name)

    def cancel(self) -> None:
        """End the election without waiting (safe from callbacks); the loop releases.

        The watch stream's task ends here too: nothing waits for it.
        """
        self._machine.cancel()
        follower = self._tasks.get("-follow")
        if follower is not None and follower is not asyncio.current_task():
            follower.cancel()
        self._notify()

    async def stop(self, timeout: float | None = None) -> None:
        """End the election: step down now, release the lease, wait for the tasks.

        Waits at most ``timeout`` seconds for the release (None: about one
        request timeout). From a callback it does not wait.
        """
        self.cancel()
        if asyncio.current_task() in self._tasks.values():
            return
        await self._drive(self._machine.stop_now())
        if self._tasks:
            ended = asyncio.gather(*self._tasks.values(), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), timeout)

    async def transfer(self, to: str, timeout: float | None = None) -> Lease | None:
        """``LeaderElector.transfer``: end the election handing the lease to ``to``."""
        to = check_successor(to, self.identity)
        if asyncio.current_task() in self._tasks.values():
            raise RuntimeError("transfer() from a callback would wait for itself; use cancel()")
        await self._drive(self._machine.transfer_now(to))
        await self.stop(timeout)
        return self._machine.handed

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

    # -- the driver ----------------------------------------------------------------------

    async def _drive(self, flow: _machine.Flow) -> None:
        """Perform ``flow``'s actions; the machine decides while the lock is held."""
        result: _machine.Result = None
        held = False  # a cancelled task may stop while waiting for the lock
        try:
            await self._lock.acquire()
            held = True
            while (action := _machine.step(flow, result)) is not None:
                self._notify()
                if not isinstance(action, _machine.BLOCKING):
                    result = await self._act(action)
                    continue
                self._lock.release()
                held = False
                result = await self._io(action)
                await self._lock.acquire()
                held = True
        finally:
            if held:
                self._lock.release()
            flow.close()
            self._notify()

    async def _follow(self, flow: _machine.Flow) -> None:
        try:
            await self._drive(flow)
        finally:  # also when cancel() cancelled this task in the middle of a read
            await self._close_stream()

    async def _wait(self, action: _machine.Wait) -> None:
        while not action.done():
            changed = self._changed
            left = None if action.until is None else action.until - self._clock()
            if left is not None and left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def _io(self, action: _machine.Action) -> _machine.Result:
        try:
            if isinstance(action, _machine.Wait):
                await self._wait(action)
            elif isinstance(action, _machine.Send):
                answer: _machine.Result = await self._request(action)()
                return answer
            elif isinstance(action, _machine.OpenWatch):
                stream = self.client.watch(self.key, last_event_id=action.last_event_id)
                self._stream, self._events = stream, aiter(stream)
            elif isinstance(action, _machine.NextEvent):
                return None if self._events is None else await anext(self._events, None)
            else:
                await self._close_stream()
        except Exception as exc:  # the machine decides what an error means
            return exc
        return None

    def _term_changed(self, began: bool) -> None:
        if began:  # run_while_leader waits on the term's own event
            self._lost = asyncio.Event()
        else:
            self._lost.set()

    async def _act(self, action: _machine.Action) -> _machine.Result:
        if not isinstance(action, _machine.Call):
            self.cancel()
            return None
        callback = self._callback(action)
        if callback is None:
            return False
        try:
            outcome = callback()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            return exc
        return True

    async def _close_stream(self) -> None:
        stream, self._stream, self._events = self._stream, None, None
        if stream is not None:
            await stream.aclose()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
