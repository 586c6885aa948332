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
or a LAN); then idle connections, those that completed fewest requests
first, longest idle first among equals. A leader renewing on one kept-alive
connection soon has more completed requests than an attacker can spend on
each of ``cap`` connections, so it goes last; if it still goes, its client
sees the close before its next request and opens another. Only when every
other connection is busy is the newcomer itself closed.

Rejected: ordering idle connections by idle time alone (a flood of
connections that each fetch /healthz, no token needed, outlasts a leader
that renews every few seconds); a per-address limit (clients behind one
NAT or proxy share an address, an attacker with many does not care).
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


IDLE_TIERS = 16
"""Idle connections are ranked by the requests they completed, counted up to this."""


class ConnectionTable(Generic[C]):
    """The open connections of one process, kept in the order they may be evicted.

    Tier 0 holds connections that never completed a request, tier n those that
    completed n (the last tier: at least that many) and sit idle; each tier is
    oldest (longest idle) first. Eviction takes the first of the lowest tier.
    """

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        # Insertion-ordered dicts: the first key of a tier is the next of it to go.
        self._tiers: list[dict[C, None]] = [{} for _ in range(IDLE_TIERS + 1)]
        self._tier_of: dict[C, int] = {}
        self._done: dict[C, int] = {}  # requests completed, per open connection
        self._busy: set[C] = set()

    def __len__(self) -> int:
        return len(self._done)

    def opened(self, conn: C) -> list[C]:
        """Count ``conn``; the connections to close so that at most ``cap`` stay open."""
        self._done[conn] = 0
        self._place(conn, 0)
        victims: list[C] = []
        while len(self) > self.cap:
            victim = self._next_victim(conn)
            self.closed(victim)
            victims.append(victim)
        return victims

    def _place(self, conn: C, tier: int) -> None:
        self._tiers[tier][conn] = None
        self._tier_of[conn] = tier

    def _next_victim(self, newcomer: C) -> C:
        for tier in self._tiers:
            for conn in tier:
                if conn is not newcomer:
                    return conn
                break  # the newcomer, newest of tier 0, is alone there: look further
        return newcomer  # every other connection has a request in progress

    def request_started(self, conn: C) -> None:
        """A request head arrived complete: the connection is not evictable until answered."""
        tier = self._tier_of.pop(conn, None)
        if tier is not None:
            del self._tiers[tier][conn]
            self._busy.add(conn)

    def request_done(self, conn: C) -> None:
        """The answer went out: the connection is idle, the most recently in its tier."""
        if conn in self._busy:
            self._busy.discard(conn)
            self._done[conn] += 1
            self._place(conn, min(self._done[conn], IDLE_TIERS))

    def closed(self, conn: C) -> None:
        if self._done.pop(conn, None) is None:
            return
        tier = self._tier_of.pop(conn, None)
        if tier is not None:
            del self._tiers[tier][conn]
        self._busy.discard(conn)

    def counts(self) -> dict[str, int]:
        """How many connections are fresh, idle and busy."""
        idle = sum(len(t) for t in self._tiers[1:])
        return {"fresh": len(self._tiers[0]), "idle": idle, "busy": len(self._busy)}


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
