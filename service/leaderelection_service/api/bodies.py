"""Reading a request body ahead of the app, then handing it on as if unread.

Example::

    body, tail = await read_body(receive, limit=16384)    # tail: a disconnect, if any
    if body is None: ...                                  # more than the limit arrived
    await app(scope, replay(body, tail, receive), send)

Used where a layer must see the body before the route does: the hot routes
(to validate it) and the body limit (a chunked body declares no length, so
its size is known only once read).
"""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_body(
    receive: Receive, limit: int | None = None
) -> tuple[bytes | None, Message | None]:
    """The whole body (None once more than ``limit`` bytes came), and a message
    that ended the request early (a disconnect), if any."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        seen += len(chunk)
        if limit is not None and seen > limit:
            return None, None  # read no further: the rest is refused unread
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay(body: bytes, tail: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the route the body already read, then the real stream."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if tail is not None:
        pending.append(tail)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
