"""``LeaseClient`` and ``AsyncLeaseClient``: the service's HTTP API, typed.

Example::

    with LeaseClient("http://127.0.0.1:8080", token=None) as client:
        lease = client.acquire("cron", "host-a", ttl=10)      # Lease, token 1
        lease = client.renew("cron", "host-a", lease.fencing_token, ttl=10)
        client.release("cron", "host-a", lease.fencing_token)
        for lease in client.list(prefix="cr"):                # every page
            print(lease.key, lease.holder, lease.held)

    async with AsyncLeaseClient("http://127.0.0.1:8080") as client:
        lease = await client.get("cron")
        async for lease in client.list():
            ...
        async with client.watch("cron") as events:            # LeaseEvent, as they happen
            async for event in events:
                ...

Both have the same methods; the async closer is ``aclose()``. Each method
blocks (or awaits) for one HTTP request (``list`` for one per page), raises
the ``errors`` tree (``LeaseHeld``, ``LeaseLost``, ``TransportError`` …), and
takes an optional ``timeout`` in seconds overriding the client's for that call.
A client may be shared between threads (sync) or tasks (async).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Self

import httpx

from leaderelection import _base
from leaderelection._base import Call
from leaderelection.lease import Lease
from leaderelection.watch import AsyncWatch, Watch, watch_call


class LeaseClient:
    """A blocking client of one leaderelection service (``base_url``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = _base.DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            headers=_base.headers(token),
            timeout=timeout,
            transport=transport,
        )

    def _send(self, call: Call, timeout: float | None) -> httpx.Response:
        try:
            return self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise _base.wrap_transport_error(exc, call) from exc

    def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        *,
        value: str | None = None,
        limit: int = 1,
        timeout: float | None = None,
    ) -> Lease:
        """Acquire ``key`` for ``ttl`` seconds, publishing ``value``; ``LeaseHeld`` if
        another holder has it (``limit`` N: all N slots of a semaphore key;
        ``LimitMismatch`` if the key is held with another limit)."""
        call = _base.acquire(key, holder, ttl, value, limit)
        return _base.parse_lease(self._send(call, timeout))

    def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None = None,
        *,
        value: str | None = None,
        announce: bool = False,
        timeout: float | None = None,
    ) -> Lease:
        """Extend a held lease (``ttl`` None: its current ttl); ``LeaseLost`` if not held.

        ``value`` replaces the published value (None: unchanged) in the same
        term; ``announce`` sends that change to every watcher (docs/watch.md).
        """
        call = _base.renew(key, holder, fencing_token, ttl, value, announce)
        return _base.parse_lease(self._send(call, timeout))

    def release(
        self, key: str, holder: str, fencing_token: int, *, timeout: float | None = None
    ) -> Lease:
        """Free a held lease at once; ``LeaseLost`` if another term has it."""
        call = _base.release(key, holder, fencing_token)
        return _base.parse_lease(self._send(call, timeout))

    def revoke(self, key: str, *, timeout: float | None = None) -> Lease:
        """End the current term of ``key`` now, whoever holds it (an admin token's act).

        The holder's next renew is ``LeaseLost``; revoking a lease already
        released or revoked changes nothing. ``Forbidden`` without the admin role.
        """
        return _base.parse_lease(self._send(_base.revoke(key), timeout))

    def delete(self, key: str, *, timeout: float | None = None) -> Lease:
        """Remove ``key``, whose lease is not held (an admin token's act): its last record.

        ``LeaseHeld`` while it is held (revoke it first), ``LeaseNotFound`` if
        there is no such key, ``Forbidden`` without the admin role. A later
        acquire of the key gets a fencing token above every one it had.
        """
        return _base.parse_lease(self._send(_base.delete(key), timeout))

    def transfer(
        self,
        key: str,
        holder: str | None = None,
        fencing_token: int | None = None,
        to: str = "",
        *,
        timeout: float | None = None,
    ) -> Lease:
        """Hand ``key`` to the holder ``to``: by its holder (``holder``, ``fencing_token``)
        ending its term now, or with an admin token (both None) asking the holder to
        step down. For one ttl after the term ends only ``to`` may acquire."""
        call = _base.transfer(key, to, holder, fencing_token)
        return _base.parse_lease(self._send(call, timeout))

    def get(self, key: str, *, timeout: float | None = None) -> Lease:
        """The lease of ``key``; ``LeaseNotFound`` if it was never acquired."""
        return _base.parse_lease(self._send(_base.get(key), timeout))

    def list(
        self,
        prefix: str | None = None,
        *,
        page_size: int = _base.PAGE_SIZE,
        timeout: float | None = None,
    ) -> Iterator[Lease]:
        """Every lease whose key starts with ``prefix``, by key, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page, cursor = _base.parse_page(
                self._send(_base.list_page(prefix, cursor, page_size), timeout)
            )
            yield from page
            if cursor is None:
                return

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        renewed: bool = False,
        last_event_id: str | None = None,
        timeout: float | None = None,
    ) -> Watch:
        """A stream of ``LeaseEvent`` for ``key``, or every key under ``prefix`` (all: neither).

        ``with client.watch("cron") as events: for event in events: ...``; see
        ``leaderelection.watch``. ``timeout`` bounds connecting; a stream with no
        byte for 45 s (keep-alives come every 15 s) raises ``TransportError``.
        """
        call = watch_call(key, prefix, renewed)
        return Watch(self._http, call, last_event_id, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncLeaseClient:
    """The asyncio twin of ``LeaseClient``: same methods, awaited; ``aclose()``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = _base.DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_base.headers(token),
            timeout=timeout,
            transport=transport,
        )

    async def _send(self, call: Call, timeout: float | None) -> httpx.Response:
        try:
            return await self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise _base.wrap_transport_error(exc, call) from exc

    async def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        *,
        value: str | None = None,
        limit: int = 1,
        timeout: float | None = None,
    ) -> Lease:
        """Acquire ``key`` for ``ttl`` seconds, publishing ``value``; ``LeaseHeld`` if
        another holder has it (``limit`` N: all N slots of a semaphore key;
        ``LimitMismatch`` if the key is held with another limit)."""
        call = _base.acquire(key, holder, ttl, value, limit)
        return _base.parse_lease(await self._send(call, timeout))

    async def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None = None,
        *,
        value: str | None = None,
        announce: bool = False,
        timeout: float | None = None,
    ) -> Lease:
        """Extend a held lease (``ttl`` None: its current ttl); ``LeaseLost`` if not held.

        ``value`` replaces the published value (None: unchanged) in the same
        term; ``announce`` sends that change to every watcher (docs/watch.md).
        """
        call = _base.renew(key, holder, fencing_token, ttl, value, announce)
        return _base.parse_lease(await self._send(call, timeout))

    async def release(
        self, key: str, holder: str, fencing_token: int, *, timeout: float | None = None
    ) -> Lease:
        """Free a held lease at once; ``LeaseLost`` if another term has it."""
        call = _base.release(key, holder, fencing_token)
        return _base.parse_lease(await self._send(call, timeout))

    async def revoke(self, key: str, *, timeout: float | None = None) -> Lease:
        """End the current term of ``key`` now, whoever holds it (an admin token's act)."""
        return _base.parse_lease(await self._send(_base.revoke(key), timeout))

    async def delete(self, key: str, *, timeout: float | None = None) -> Lease:
        """Remove ``key``, whose lease is not held (an admin token's act): its last record."""
        return _base.parse_lease(await self._send(_base.delete(key), timeout))

    async def transfer(
        self,
        key: str,
        holder: str | None = None,
        fencing_token: int | None = None,
        to: str = "",
        *,
        timeout: float | None = None,
    ) -> Lease:
        """``LeaseClient.transfer``."""
        call = _base.transfer(key, to, holder, fencing_token)
        return _base.parse_lease(await self._send(call, timeout))

    async def get(self, key: str, *, timeout: float | None = None) -> Lease:
        """The lease of ``key``; ``LeaseNotFound`` if it was never acquired."""
        return _base.parse_lease(await self._send(_base.get(key), timeout))

    async def list(
        self,
        prefix: str | None = None,
        *,
        page_size: int = _base.PAGE_SIZE,
        timeout: float | None = None,
    ) -> AsyncIterator[Lease]:
        """Every lease whose key starts with ``prefix``, by key, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page, cursor = _base.parse_page(
                await self._send(_base.list_page(prefix, cursor, page_size), timeout)
            )
            for lease in page:
                yield lease
            if cursor is None:
                return

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        renewed: bool = False,
        last_event_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncWatch:
        """A stream of ``LeaseEvent`` for ``key``, or every key under ``prefix`` (all: neither).

        ``async with client.watch("cron") as events: async for event in events: ...``
        """
        call = watch_call(key, prefix, renewed)
        timeout = self.timeout if timeout is None else timeout
        return AsyncWatch(self._http, call, last_event_id, timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["AsyncLeaseClient", "LeaseClient"]
