"""Change signals for ``wait_for_change``: PostgreSQL LISTEN, or this process's writes.

Example::

    changes = Changes()
    listener = PgListener("postgresql://db/leases", "public.leaderelection_leases", changes)
    listener.start()                  # in the running event loop
    await changes.wait(timeout=5.0)   # returns on any replica's write, or after 5 s
    await listener.stop()

The lease statements call ``pg_notify`` in the same statement as their write,
so a notification arrives only after the write committed. One dedicated
connection per process listens (never a pooled one: a pooled connection may be
handed to someone else, and pgbouncer in transaction mode drops LISTEN). When
that connection breaks, the listener reconnects with backoff and, once back,
signals a change of unknown keys, since writes may have happened while it
was away; it does the same on its first connection, for the writes made
before it listened. Each notification's payload is the key written
(``pg_notify(channel, lease_key)``), so the watch hub re-reads that key
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from leaderelection_service.change_signal import Changes

__all__ = ["Changes", "PgListener"]

log = logging.getLogger("leaderelection.sql")


class PgListener:
    def __init__(self, conninfo: str, channel: str, changes: Changes) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.changes = changes
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=3
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connected.set()
                    # Writes may have happened before LISTEN (or while away):
                    # which ones is not known.
                    self.changes.fire(None)
                    delay = 0.2
                    async for note in conn.notifies():
                        self.changes.fire((note.payload,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: wait, reconnect
                self.connected.clear()
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
