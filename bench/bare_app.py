"""The server loop's own ceiling: a bare ASGI app that reads the body and answers fixed bytes.

Example::

    uvicorn bench.bare_app:app --workers 1 --no-access-log

No framework, no validation, no backend: what uvicorn and httptools cost per
request on this machine. The renew on ``memory://`` compared with it is the
cost of HTTP routing, body validation, the lease rules and the JSON answer
together (issue 19: at most twice the loop's own).

The answer is as long as the service's renew answer, so the bytes written
are the same. The no-op FastAPI app (``bench.noop_app``) stays beside it as a
second ceiling: the framework without the service's work. Rejected: measuring
the loop with an empty answer (``return``): the write of ~300 bytes is part
of what every renewal costs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench.noop_app import ANSWER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_BODY = ANSWER.encode()
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))],
}
_ANSWER = {"type": "http.response.body", "body": _BODY}


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    more = True
    while more:  # read the whole body, as a real route must
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_ANSWER)
