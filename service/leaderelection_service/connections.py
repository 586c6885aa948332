"""The rules of the front door: which connection to close when one process holds too many,
and how many it may hold under its file limit.

Example::

    table = ConnectionTable(cap=4096)
    for victim in table.opened(conn):     # over the cap: close these (maybe conn itself)
        victim.evict()
    table.request_started(conn)           # a complete head arrived: never evicted now
    table.request_done(conn)              # answered: evictable again, as idle
    table.closed(conn)

    budget = connection_budget(soft=1024, requested=4096, explicit=False)
    budget.cap, budget.backlog            # 832, 128

No I/O and no clock: the protocol (``http_protocol``) tells the table what
happened, in order, and closes what it is told to.

Why evict rather than refuse, and in this order. At the cap a new connection
is the one a returning client makes (a leader whose connection dropped); a
server that refuses the newest (or, like uvicorn's ``limit_concurrency``,
answers 503 to requests on established connections once enough are open)
lets whoever opened connections first keep the door shut, and lets them make
a leader's renewal fail. So a connection with a request in progress is never
closed; first to go are those that never completed a request, oldest first
(a flood of idle or half-sent connections evicts itself while any newcomer
lives for about cap / flood rate seconds, enough to send a head on loopback
or a LAN); then connections that completed requests and sit idle, longest
idle first (a leader renewing every few seconds is near the end of that
order; if its connection still goes, its client sees the close before its
next request and opens another). Only when every other connection is busy
is the newcomer itself closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")

FILE_RESERVE = 64
"""Descriptors kept below the file limit for everything but client connections:
the listening socket, the backend's files and connections, logs, pipes."""
DEFAULT_BACKLOG = 2048
"""uvicorn's listen backlog, used when the file limit has room for it."""


class ConnectionTable(Generic[C]):
    """The open connections of one process, kept in the order they may be evicted."""

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        # Insertion-ordered dicts: the first key is the next to evict.
        self._fresh: dict[C, None] = {}  # never completed a request, oldest first
        self._idle: dict[C, None] = {}  # completed one, none in progress, longest idle first
        self._busy: set[C] = set()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._idle) + len(self._busy)

    def opened(self, conn: C) -> list[C]:
        """Count ``conn``; the connections to close so that at most ``cap`` stay open."""
        self._fresh[conn] = None
        victims: list[C] = []
        while len(self) > self.cap:
            victim = self._next_victim(conn)
            self.closed(victim)
            victims.append(victim)
        return victims

    def _next_victim(self, newcomer: C) -> C:
        for conn in self._fresh:
            if conn is not newcomer:
                return conn
            break  # the newcomer is the only fresh one left: an idle one goes first
        for conn in self._idle:
            return conn
        return newcomer

    def request_started(self, conn: C) -> None:
        """A request head arrived complete: the connection is not evictable until answered."""
        if conn in self._fresh or conn in self._idle:
            self._fresh.pop(conn, None)
            self._idle.pop(conn, None)
            self._busy.add(conn)

    def request_done(self, conn: C) -> None:
        """The answer went out: the connection is idle, the most recently so."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._idle[conn] = None

    def closed(self, conn: C) -> None:
        self._fresh.pop(conn, None)
        self._idle.pop(conn, None)
        self._busy.discard(conn)

    def counts(self) -> dict[str, int]:
        return {"fresh": len(self._fresh), "idle": len(self._idle), "busy": len(self._busy)}


@dataclass(frozen=True)
class Budget:
    cap: int
    """Client connections one process keeps open at most."""
    backlog: int
    """The listen backlog: connections the kernel queues before the process accepts them."""
    clamped: bool
    """True when the default cap did not fit the file limit and was lowered."""


def connection_budget(soft: int, requested: int, *, explicit: bool) -> Budget:
    """The cap and backlog that fit ``soft`` open files.

    The event loop (uvloop, libuv) accepts a whole burst of queued connections
    before the protocol of the first one hears of it, so a process may briefly
    hold up to a backlog more connections than the table counts; the cap keeps
    that burst and ``FILE_RESERVE`` below the limit. A cap set on purpose that
    does not fit is a configuration error (``ValueError``); the default is
    lowered to fit (``clamped``) and the start says so.
    """
    backlog = max(16, min(DEFAULT_BACKLOG, soft // 8))
    room = soft - backlog - FILE_RESERVE
    if room < 1:
        raise ValueError(f"the open file limit ({soft}) leaves no room for client connections")
    if requested <= room:
        return Budget(requested, backlog, clamped=False)
    if explicit:
        raise ValueError(
            f"max_connections ({requested}) does not fit the open file limit ({soft}, after "
            f"raising the soft limit to the hard one): at most {room} (the limit less a "
            f"listen backlog of {backlog} and {FILE_RESERVE} files for the backend); lower "
            "it or raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        )
    return Budget(room, backlog, clamped=True)
