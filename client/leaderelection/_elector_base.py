"""What ``LeaderElector`` and ``AsyncLeaderElector`` share besides the machine.

Example::

    class LeaderElector(ElectorBase[LeaseClient, OnElected, OnError]):  # arguments, readers
        def _step(self, flow, result): ...           # and its own I/O

The constructor (its arguments are the public API of both electors), the
properties that read the machine without a lock, and the arguments of each
action's I/O. Rejected: one elector class with a ``mode`` flag (each method
would branch on it, and the sync one would import asyncio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from leaderelection._base import KEY_RE
from leaderelection._election import Clock, Leadership, default_identity
from leaderelection._machine import Call, Machine, Send
from leaderelection.config import Config
from leaderelection.lease import Lease

ClientT = TypeVar("ClientT")
ElectedT = TypeVar("ElectedT")
ErrorT = TypeVar("ErrorT")
Cancel = Callable[[], None]
OnElected = Callable[[str, Cancel], object]
"""``on_elected(identity, cancel)`` and ``on_ousting(identity, cancel)``."""
OnError = Callable[[str, Exception, Cancel], object]
"""``on_error(identity, error, cancel)``."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise ValueError(f"key must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$, got {key!r}")
    return key


VALUE_MAX_BYTES = 4096


LIMIT_MAX = 1000


def check_limit(limit: int) -> int:
    """``limit``: an int in 1..1000 (the service's bounds), checked before any request."""
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int, got {type(limit).__name__}")
    if not 1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit must be between 1 and {LIMIT_MAX}, got {limit}")
    return limit


def check_value(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"value must be a string, got {type(value).__name__}")
    if len(value.encode("utf-8")) > VALUE_MAX_BYTES or "\x00" in value:
        raise ValueError(f"value must be at most {VALUE_MAX_BYTES} bytes of UTF-8, without NUL")
    return value


def check_successor(to: str, identity: str) -> str:
    if not isinstance(to, str) or not to or not to.isprintable() or len(to) > 256:
        raise ValueError(f"to must be 1-256 printable characters, got {to!r}")
    if to == identity:
        raise ValueError(f"to must name another candidate than this elector ({identity!r})")
    return to


class ElectorBase(Generic[ClientT, ElectedT, ErrorT]):
    """The arguments and readers of an elector over a ``ClientT``, with its callback types."""

    def __init__(
        self,
        client: ClientT,
        key: str,
        *,
        identity: str | None = None,
        config: Config | None = None,
        on_elected: ElectedT | None = None,
        on_ousting: ElectedT | None = None,
        on_error: ErrorT | None = None,
        clock: Clock = time.monotonic,
        watch: bool = True,
        value: str | None = None,
        limit: int = 1,
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
        self.limit = check_limit(limit)
        """How many electors the key lets lead at once (a semaphore); 1: one leader."""
        self._machine = Machine(
            self.key, self.identity, self.config, clock, value=check_value(value), limit=self.limit
        )
        self._setup()

    def _setup(self) -> None:
        """The driver's own locks and events (called at the end of ``__init__``)."""

    @property
    def is_leader(self) -> bool:
        """True only while a term is open and the clock is before its deadline."""
        return self._machine.election.is_leader()

    @property
    def lease(self) -> Lease | None:
        """The current term's lease (``fencing_token``), or None when not leading."""
        return self._machine.lease()

    @property
    def leadership(self) -> Leadership | None:
        """The current or last term (monotonic start, deadline or end), None before any."""
        return self._machine.leadership

    def _request(self, action: Send) -> Callable[[], Any]:
        """The client call of a ``Send``, ready to call (sync) or to call and await (async)."""
        method = getattr(self.client, action.operation)
        return lambda: method(*action.args, timeout=action.timeout, **action.kwargs)

    def _callback(self, action: Call) -> Callable[[], Any] | None:
        """The callback of a ``Call`` with its arguments bound; None if none is set."""
        if action.callback != "on_error":
            self._term_changed(action.callback == "on_elected")
        fn = getattr(self, action.callback)
        if fn is None:
            return None
        if action.error is not None:
            error = action.error
            return lambda: fn(self.identity, error, self.cancel)
        return lambda: fn(self.identity, self.cancel)

    def proclaim(self, value: str, *, announce: bool = True) -> None:
        """Publish ``value`` (an address, a version) as the lease's ``value``.

        Leading: a renew carries it at once, in the same term; ``announce``
        sends the change to every watcher of the key, not only to those that
        follow renewals (docs/watch.md). Not leading: the next acquire
        carries it. Observers read it as ``Lease.value``. ``ValueError`` if
        it is over 4,096 bytes of UTF-8.
        """
        self._machine.proclaim(check_value(value) or "", announce)
        self._notify()

    def _notify(self) -> None:
        """Wake the driver's waits: the machine's state changed."""
        raise NotImplementedError

    def _term_changed(self, began: bool) -> None:
        """A term began (True) or ended: before its callback, under the driver's lock."""
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError
