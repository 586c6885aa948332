"""A TCP proxy on loopback whose connections a test can cut and restore.

Example::

    with TcpProxy(upstream_port=svc.port) as proxy:   # its own thread and event loop
        client = LeaseClient(f"http://127.0.0.1:{proxy.port}")
        proxy.cut()        # every open connection is reset; new ones are refused
        proxy.restore()    # new connections are forwarded again
        proxy.black_hole() # connections stay open, bytes vanish: requests hang
        proxy.retarget(other_svc.port)

While cut, the listening socket stays bound (the port is kept) but every
accepted connection is closed at once, so the client sees a reset, as when a
network path fails; connections that were open are closed too, mid-request or
idle. Nothing is buffered across a cut.

A black hole is the other way a network fails: nothing is reset, every byte
sent either way (on open connections and on new ones) is read and dropped, so
a client's request hangs until its own timeout, as when a route silently
drops packets. ``restore()`` ends it for new connections; the open ones have
lost bytes and are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from support.procs import free_port

_CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.is_cut = False
        self.is_black_hole = False
        self.upstream_bytes = 0
        """Bytes forwarded to the upstream so far: > 0 once a client has sent a request."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- control, from any thread ---------------------------------------------

    def start(self) -> TcpProxy:
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"proxy on port {self.port} did not start")
        return self

    def cut(self) -> None:
        self.is_cut = True
        self._call(self._close_all)

    def restore(self) -> None:
        was_black_hole = self.is_black_hole
        self.is_cut = self.is_black_hole = False
        if was_black_hole:
            self._call(self._close_all)

    def black_hole(self) -> None:
        self.is_black_hole = True

    def retarget(self, upstream_port: int) -> None:
        """Forward new connections to ``upstream_port`` (open ones are closed)."""
        self.upstream_port = upstream_port
        self._call(self._close_all)

    def close(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the event loop's side ----------------------------------------------------

    def _call(self, fn: object) -> None:
        loop = self._loop
        if loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(fn(), loop)  # type: ignore[operator]
        done.result(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_all()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    async def _close_all(self) -> None:
        for w in list(self._writers):
            _abort(w)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            _abort(writer)
            return
        if self.is_black_hole:
            self._writers.add(writer)
            try:
                while await reader.read(_CHUNK):
                    pass
            except (ConnectionError, OSError):
                pass
            finally:
                self._writers.discard(writer)
                _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _abort(writer)
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, self, upstream=True),
                _pipe(up_reader, writer, self, upstream=False),
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                _abort(w)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: TcpProxy, *, upstream: bool
) -> None:
    try:
        while data := await reader.read(_CHUNK):
            if proxy.is_black_hole:
                continue  # dropped: the other side never hears of it
            if upstream:
                proxy.upstream_bytes += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once with a reset, never waiting for buffered data."""
    with contextlib.suppress(Exception):
        writer.transport.abort()
