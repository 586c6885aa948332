"""One face for ``LeaderElector`` and ``AsyncLeaderElector``, so each scenario runs on both.

Example::

    def test_something(electors: Electors, url: str) -> None:   # runs as [sync] and [async]
        with electors.new(url, "job", config=FAST, on_elected=...) as elector:
            assert elector.wait_for_leadership(20)

The sync kind calls the elector directly. The async kind runs one event loop
in a thread for the whole test; every call is submitted to it and waited for,
so the test reads the same blocking code for both kinds and only the driver
under it changes. Callbacks are plain functions called from the elector's own
thread or task; ``coroutines=True`` wraps them as coroutine functions for the
async kind (the sync kind takes plain functions only). A blocking
``httpx.MockTransport`` handler runs in a worker thread for the async kind, so
it never blocks the event loop the elector runs in (as a slow server would not).

Rejected: writing each scenario twice (the drift this module exists to end),
and ``pytest-asyncio`` tests for the async kind (the scenario bodies would
then have to be written twice, once with ``await``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, Self, TypeVar

import httpx
import pytest

from leaderelection import AsyncLeaderElector, AsyncLeaseClient, LeaderElector, LeaseClient
from leaderelection._election import Leadership
from leaderelection.lease import Lease

T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]
KINDS = ("sync", "async")


class Loop:
    """An asyncio event loop in a daemon thread; ``run(coro)`` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self.run(call())

    def close(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Elector:
    """A started-or-not elector of either kind, driven by blocking calls."""

    def __init__(self, kind: str, inner: LeaderElector | AsyncLeaderElector, loop: Loop | None):
        self.kind = kind
        self.inner = inner
        self._loop = loop

    # -- what tests read --------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def is_leader(self) -> bool:
        return self.inner.is_leader

    @property
    def lease(self) -> Lease | None:
        return self.inner.lease

    @property
    def leadership(self) -> Leadership | None:
        return self.inner.leadership

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        if isinstance(self.inner, LeaderElector):
            return self.inner.wait_for_leadership(timeout)
        assert self._loop is not None
        wait = None if timeout is None else timeout + 30
        return self._loop.run(self.inner.wait_for_leadership(timeout), wait)

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        if isinstance(self.inner, LeaderElector):
            self.inner.start()
        else:
            assert self._loop is not None
            self._loop.run(self.inner.start())

    def cancel(self) -> None:
        if isinstance(self.inner, LeaderElector):
            self.inner.cancel()
        else:
            assert self._loop is not None
            self._loop.call(self.inner.cancel)

    def proclaim(self, value: str, *, announce: bool = True) -> None:
        if isinstance(self.inner, LeaderElector):
            self.inner.proclaim(value, announce=announce)
        else:
            assert self._loop is not None
            inner = self.inner
            self._loop.call(lambda: inner.proclaim(value, announce=announce))

    def stop(self, timeout: float | None = None) -> None:
        if isinstance(self.inner, LeaderElector):
            self.inner.stop(timeout)
        else:
            assert self._loop is not None
            self._loop.run(self.inner.stop(timeout))

    def transfer(self, to: str, timeout: float | None = None) -> Lease | None:
        if isinstance(self.inner, LeaderElector):
            return self.inner.transfer(to, timeout)
        assert self._loop is not None
        return self._loop.run(self.inner.transfer(to, timeout))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run_while_leader(
        self, started: Callable[[], object], ended: Callable[[], object]
    ) -> threading.Thread:
        """``run_while_leader`` in a thread: ``started()`` each term, ``ended()`` when it ends.

        The sync kind's work waits on its ``lost`` event; the async kind's work
        is a task that waits until it is cancelled.
        """
        if isinstance(self.inner, LeaderElector):

            def work(lost: threading.Event) -> None:
                started()
                lost.wait()
                ended()

            target: Callable[[], object] = lambda: self.inner.run_while_leader(work)  # type: ignore[union-attr]  # noqa: E731
        else:
            inner, loop = self.inner, self._loop
            assert loop is not None

            async def awork() -> None:
                started()
                try:
                    await asyncio.Event().wait()
                finally:
                    ended()

            target = lambda: loop.run(inner.run_while_leader(awork), None)  # noqa: E731
        runner = threading.Thread(target=target, daemon=True)
        runner.start()
        return runner


class Electors:
    """Makes electors (and their clients) of one kind for one test; closes them after."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = Loop() if kind == "async" else None
        self._clients: list[LeaseClient | AsyncLeaseClient] = []

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def client(
        self, url: str, handler: Handler | None = None, **kw: Any
    ) -> LeaseClient | AsyncLeaseClient:
        """A client of this kind for ``url`` (``handler``: an ``httpx.MockTransport``)."""
        if self.loop is None:
            transport = httpx.MockTransport(handler) if handler is not None else None
            sync = LeaseClient(url, transport=transport, **kw)
            self._clients.append(sync)
            return sync

        async def make() -> AsyncLeaseClient:
            transport = None
            if handler is not None:
                blocking = handler

                async def in_thread(request: httpx.Request) -> httpx.Response:
                    await request.aread()
                    return await asyncio.to_thread(blocking, request)

                transport = httpx.MockTransport(in_thread)
            return AsyncLeaseClient(url, transport=transport, **kw)

        client = self.loop.run(make())
        self._clients.append(client)
        return client

    def new(
        self,
        url_or_client: str | LeaseClient | AsyncLeaseClient,
        key: str,
        *,
        handler: Handler | None = None,
        coroutines: bool = False,
        **kw: Any,
    ) -> Elector:
        """An elector of this kind for ``key`` (``kw``: the elector's own arguments)."""
        client = url_or_client
        if isinstance(client, str):
            client = self.client(client, handler)
        if self.loop is None:
            assert isinstance(client, LeaseClient)
            return Elector(self.kind, LeaderElector(client, key, **kw), None)
        assert isinstance(client, AsyncLeaseClient)
        if coroutines:
            kw = {name: _as_coroutine(fn) if name.startswith("on_") else fn
                  for name, fn in kw.items()}  # fmt: skip
        elector = self.loop.call(lambda: AsyncLeaderElector(client, key, **kw))
        return Elector(self.kind, elector, self.loop)

    def close(self) -> None:
        for client in self._clients:
            if isinstance(client, LeaseClient):
                client.close()
            elif self.loop is not None:
                self.loop.run(client.aclose())
        if self.loop is not None:
            self.loop.close()


def _as_coroutine(fn: Any) -> Any:
    if fn is None:
        return None

    async def callback(*args: Any) -> object:
        await asyncio.sleep(0)
        return fn(*args)

    return callback


@pytest.fixture(params=KINDS)
def electors(request: pytest.FixtureRequest) -> Iterator[Electors]:
    """Every test that takes this runs twice: with ``LeaderElector`` and ``AsyncLeaderElector``."""
    made = Electors(request.param)
    try:
        yield made
    finally:
        made.close()
