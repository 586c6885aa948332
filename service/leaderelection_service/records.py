"""Lease records: what a backend stores for one key, and how it reads on the wire.

Example::

    rec = LeaseRecord.new_term(None, key="cron", holder="a", ttl=5.0, now=now)
    rec.fencing_token        # 1
    rec.to_public(now)       # the contract's JSON object

A record is immutable; each change makes a new one with ``revision + 1``.
Records are kept after release so that the fencing token never repeats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from leaderelection_service.slots import Slot

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
PREFIX_PATTERN = r"^[A-Za-z0-9._-]{0,128}$"
KEY_RE = re.compile(KEY_PATTERN)
PREFIX_RE = re.compile(PREFIX_PATTERN)
HOLDER_MAX = 256
LeaseState = Literal["held", "released", "expired", "revoked"]
"""A record's ``state`` on a clock (docs/contract.md, "Words")."""
VALUE_MAX_BYTES = 4096
"""The most a lease's ``value`` may hold, in UTF-8 bytes."""
HISTORY_LIMIT = 20
"""How many terms each record remembers (the dashboard's history)."""


def valid_key(key: str) -> bool:
    return KEY_RE.fullmatch(key) is not None


def valid_holder(holder: str) -> bool:
    return 1 <= len(holder) <= HOLDER_MAX and holder.isprintable()


def valid_value(value: str) -> bool:
    return len(value.encode("utf-8", "surrogatepass")) <= VALUE_MAX_BYTES


def ended_by_of(*, released: bool, revoked: bool, successor: str | None) -> str:
    """How a term ended: the history's ``ended_by`` (the SQL ``APPEND`` says the same)."""
    if not released:
        return "expired"
    if revoked:
        return "revoked"
    return "transferred" if successor is not None else "released"


def rfc3339(t: datetime) -> str:
    """``2026-11-27T09:20:16.123456Z``: UTC, microseconds, a ``Z`` suffix."""
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    # isoformat, not strftime: the same text in half the time (every answer and write)
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s)  # takes the "Z" suffix since Python 3.11
    return t if t.tzinfo is UTC else t.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Term:
    """One leadership term in a key's history."""

    holder: str
    fencing_token: int
    acquired_at: datetime
    ended_at: datetime | None = None
    ended_by: str | None = None
    """released | expired | revoked | transferred (released naming a successor); None
    while it lasts."""
    value: str | None = None
    """The term's value when it ended (the current one while it lasts)."""

    def to_public(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "acquired_at": rfc3339(self.acquired_at),
            "ended_at": rfc3339(self.ended_at) if self.ended_at else None,
            "ended_by": self.ended_by,
            "value": self.value,
        }

    @classmethod
    def from_public(cls, d: dict[str, Any]) -> Term:
        return cls(
            holder=d["holder"],
            fencing_token=int(d["fencing_token"]),
            acquired_at=parse_time(d["acquired_at"]),
            ended_at=parse_time(d["ended_at"]) if d.get("ended_at") else None,
            ended_by=d.get("ended_by"),
            value=d.get("value"),
        )


class LazyTerms(Sequence[Term]):
    """A record's history, built on first use.

    A backend that stores the history in another form (the SQL backends' JSON
    column) hands this to ``LeaseRecord`` instead of a tuple, so that the
    answers which never show the history (acquire, renew: nearly all traffic)
    do not pay for parsing it. It compares equal to the tuple of its terms.
    """

    __slots__ = ("_build", "_terms")

    def __init__(self, build: Callable[[], Sequence[Term]]) -> None:
        self._build: Callable[[], Sequence[Term]] | None = build
        self._terms: tuple[Term, ...] = ()

    def _get(self) -> tuple[Term, ...]:
        if self._build is not None:
            self._terms = tuple(self._build())
            self._build = None
        return self._terms

    @overload
    def __getitem__(self, i: int) -> Term: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Term, ...]: ...
    def __getitem__(self, i: int | slice) -> Term | tuple[Term, ...]:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[Term]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._get() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._get())

    def __repr__(self) -> str:
        return repr(self._get()) if self._build is None else "LazyTerms(<not built yet>)"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The stored state of one key.

    ``released`` is stored; ``held`` is derived from it and the deciding clock.
    ``revision`` counts every write to this key (the watch stream's version).
    """

    key: str
    holder: str
    fencing_token: int
    ttl: float
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    transitions: int = 0
    released: bool = False
    revision: int = 1
    history: Sequence[Term] = field(default=())
    """Oldest first, the current term last; a tuple, or ``LazyTerms``."""
    value: str | None = None
    """What the holder publishes (docs/contract.md, "value"); None: nothing."""
    announced: bool = False
    """The write that set ``value`` asked for it to be announced to every watcher."""
    revoked: bool = False
    """Released by an operator's revoke, not by its holder (then ``released`` too)."""
    successor: str | None = None
    """The holder this term is handed to (docs/contract.md, "transfer"); None: nobody."""
    limit: int = 1
    """How many holders the key grants at once (``slots.py``); 1: a plain lease."""
    slots: tuple[Slot, ...] = ()
    """A semaphore key's slots (empty for a plain lease); the fields above repeat one."""

    # -- derived state -------------------------------------------------------

    def free_at(self, allowance: float = 0.0) -> datetime:
        """When another holder may take the lease (expiry plus the skew allowance)."""
        if self.released:
            return self.expires_at
        return self.expires_at + timedelta(seconds=allowance)

    def held_at(self, now: datetime, allowance: float = 0.0) -> bool:
        return not self.released and now < self.free_at(allowance)

    def reserved_for(self, now: datetime, allowance: float = 0.0) -> str | None:
        """The successor that alone may acquire at ``now``, or None.

        Rule "transfer": for one ttl after the term ended (released or lapsed,
        plus the skew allowance) only the named successor may begin a term.
        """
        if self.successor is None:
            return None
        window = self.expires_at + timedelta(seconds=self.ttl + allowance)
        return self.successor if now < window else None

    def state_at(self, now: datetime, allowance: float = 0.0) -> LeaseState:
        """``held``, ``released`` (freed by its holder) or ``expired`` (lapsed), on ``now``.

        Decided here, on the deciding clock, so that no reader guesses it from
        the times (a release and a lapse both leave ``held`` false).
        """
        if self.released:
            return "revoked" if self.revoked else "released"
        return "held" if now < self.free_at(allowance) else "expired"

    # -- transitions (used by the lease rules) ------------------------------

    @staticmethod
    def new_term(
        current: LeaseRecord | None,
        *,
        key: str,
        holder: str,
        ttl: float,
        now: datetime,
        value: str | None = None,
    ) -> LeaseRecord:
        """A fresh term after ``current`` (None: the key was never acquired)."""
        expires = now + timedelta(seconds=ttl)
        term = Term(holder=holder, fencing_token=1, acquired_at=now, value=value)
        if current is None:
            return LeaseRecord(key, holder, 1, ttl, now, now, expires, history=(term,), value=value)
        token = current.fencing_token + 1
        past = list(current.history)
        if past and past[-1].ended_at is None:
            # The previous term ended by lapsing: it was not released.
            past[-1] = replace(past[-1], ended_at=current.expires_at, ended_by="expired")
        past.append(replace(term, fencing_token=token))
        return LeaseRecord(
            key=key,
            holder=holder,
            fencing_token=token,
            ttl=ttl,
            acquired_at=now,
            renewed_at=now,
            expires_at=expires,
            transitions=current.transitions + (1 if holder != current.holder else 0),
            released=False,
            revision=current.revision + 1,
            history=tuple(past[-HISTORY_LIMIT:]),
            value=value,
        )

    def extended(
        self, *, ttl: float, now: datetime, value: str | None = None, announce: bool = False
    ) -> LeaseRecord:
        """The same term, renewed at ``now`` for ``ttl`` seconds.

        ``value`` None keeps the value (and whether it was announced);
        otherwise it replaces it, announced or not as ``announce`` says.
        """
        out = replace(
            self,
            ttl=ttl,
            renewed_at=now,
            expires_at=now + timedelta(seconds=ttl),
            revision=self.revision + 1,
        )
        if value is None:
            return out
        past = list(self.history)
        if past and past[-1].fencing_token == self.fencing_token:
            past[-1] = replace(past[-1], value=value)
        return replace(out, value=value, announced=announce, history=tuple(past))

    def released_at(
        self, now: datetime, *, revoked: bool = False, successor: str | None = None
    ) -> LeaseRecord:
        """The term ended at ``now`` by its holder's release, or by a revoke.

        ``successor`` names the holder it is handed to (a transfer); a
        successor an operator named earlier is kept.
        """
        successor = successor or self.successor
        past = list(self.history)
        if past and past[-1].fencing_token == self.fencing_token:
            ended_by = ended_by_of(released=True, revoked=revoked, successor=successor)
            past[-1] = replace(past[-1], ended_at=now, ended_by=ended_by)
        return replace(
            self,
            released=True,
            revoked=revoked,
            expires_at=now,
            revision=self.revision + 1,
            history=tuple(past),
            successor=successor,
        )

    def handed_to(self, successor: str) -> LeaseRecord:
        """The same held term, with ``successor`` named (an operator's transfer)."""
        return replace(self, successor=successor, revision=self.revision + 1)

    # -- serialisation --------------------------------------------------------

    def to_public(self, server_time: datetime, allowance: float = 0.0) -> dict[str, Any]:
        """The contract's lease record, as the HTTP API answers it.

        A semaphore key adds ``limit`` and ``holders`` (``slots.public_fields``);
        a plain lease answers exactly these fields.
        """
        out: dict[str, Any] = {
            "key": self.key,
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "ttl": self.ttl,
            "acquired_at": rfc3339(self.acquired_at),
            "renewed_at": rfc3339(self.renewed_at),
            "expires_at": rfc3339(self.expires_at),
            "transitions": self.transitions,
            "held": self.held_at(server_time, allowance),
            "state": self.state_at(server_time, allowance),
            "value": self.value,
            "server_time": rfc3339(server_time),
        } | ({"successor": self.successor} if self.successor is not None else {})
        if self.slots:
            from leaderelection_service.slots import public_fields

            out.update(public_fields(self, server_time, allowance))
        return out

    def to_storage(self) -> dict[str, Any]:
        """The stored form (file and object backends): JSON-safe, lossless."""
        out: dict[str, Any] = {
            "key": self.key,
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "ttl": self.ttl,
            "acquired_at": rfc3339(self.acquired_at),
            "renewed_at": rfc3339(self.renewed_at),
            "expires_at": rfc3339(self.expires_at),
            "transitions": self.transitions,
            "released": self.released,
            "revision": self.revision,
            "history": [t.to_public() for t in self.history],
            "value": self.value,
            "announced": self.announced,
            "revoked": self.revoked,
        } | ({"successor": self.successor} if self.successor is not None else {})
        if self.slots:  # a plain lease is stored as before
            out["limit"] = self.limit
            out["slots"] = [s.to_storage() for s in self.slots]
        return out

    @classmethod
    def from_storage(cls, d: dict[str, Any]) -> LeaseRecord:
        slots: tuple[Slot, ...] = ()
        if d.get("slots"):
            from leaderelection_service.slots import Slot

            slots = tuple(Slot.from_storage(s) for s in d["slots"])
        return cls(
            key=d["key"],
            holder=d["holder"],
            fencing_token=int(d["fencing_token"]),
            ttl=float(d["ttl"]),
            acquired_at=parse_time(d["acquired_at"]),
            renewed_at=parse_time(d["renewed_at"]),
            expires_at=parse_time(d["expires_at"]),
            transitions=int(d["transitions"]),
            released=bool(d["released"]),
            revision=int(d["revision"]),
            history=tuple(Term.from_public(t) for t in d.get("history", ())),
            # absent in records written before values existed
            value=d.get("value"),
            announced=bool(d.get("announced", False)),
            revoked=bool(d.get("revoked", False)),
            successor=d.get("successor"),
            limit=int(d.get("limit", 1)),
            slots=slots,
        )


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A record as one clock saw it: what every lease operation answers."""

    record: LeaseRecord
    server_time: datetime
    allowance: float = 0.0

    @property
    def held(self) -> bool:
        return self.record.held_at(self.server_time, self.allowance)

    @property
    def state(self) -> LeaseState:
        return self.record.state_at(self.server_time, self.allowance)

    def to_public(self) -> dict[str, Any]:
        return self.record.to_public(self.server_time, self.allowance)
