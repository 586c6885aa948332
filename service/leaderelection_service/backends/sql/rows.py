"""Rows of the lease table: read by column name into ``LeaseRow``, then ``records.LeaseRecord``.

Example::

    read = row_reader(("lease_key", "holder", ..., "now_us"))   # a cursor's column names
    row = read(values)              # LeaseRow(lease_key="cron", holder="a", ...)
    view = to_view(row, allowance=0.0)

Times in the table are integers, microseconds since the Unix epoch on the
database clock; ``past`` holds closed terms as compact JSON objects
``{"h": holder, "t": token, "a": acquired_us, "e": ended_us, "b": ended_by,
"v": value}`` (``v`` absent in terms closed before values existed).
The current term is the row itself. The history is parsed only when asked
for (``records.LazyTerms``): acquire and renew answers never show it.

A row is matched to ``LeaseRow`` by the names the cursor reports, not by
where a column sits, so a statement may add columns (PostgreSQL's
``notified``) or reorder them without a reader misreading one. The reader for
a set of names is built once and kept: each row then costs one ``itemgetter``
call. A dict per row was the alternative, rejected for cost on the path every
renewal takes: measured with ``timeit`` (load 5.7), 0.7 µs a row here against
2.2 µs for ``dict(zip(names, values))``, beside about 160 µs of CPU a
statement costs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from leaderelection_service.records import LazyTerms, LeaseRecord, LeaseView, Term, ended_by_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LeaseRow(NamedTuple):
    """One row of the lease table as a statement returns it, with the database clock."""

    lease_key: str
    holder: str
    fencing_token: int
    ttl_us: int
    acquired_us: int
    renewed_us: int
    expires_us: int
    transitions: int
    released: bool
    revision: int
    past: Any
    """JSON text, or already parsed (the drivers differ)."""
    lease_value: str | None
    announced: bool
    revoked: bool
    successor: str | None
    """The holder the lease is handed to (rule "transfer"); None: nobody."""
    lease_limit: int
    """1 for a plain lease; a semaphore key's limit (schema version 3)."""
    slots: Any
    """NULL for a plain lease; a semaphore key's slots and history (``slot_rows``)."""
    now_us: int
    """The database clock when the statement ran (judges ``held``)."""
    granted: bool | None = None
    """PostgreSQL's acquire only: whether the row is the caller's grant."""


_REQUIRED = LeaseRow._fields[:-1]
_new = tuple.__new__


@lru_cache(maxsize=64)
def row_reader(names: tuple[str, ...]) -> Callable[[Sequence[Any]], LeaseRow]:
    """A function turning a row whose columns are called ``names`` into a ``LeaseRow``."""
    missing = [f for f in _REQUIRED if f not in names]
    if missing:
        raise ValueError(f"a lease row needs the columns {missing}; the statement returned {names}")
    positions = [names.index(f) for f in _REQUIRED]
    if "granted" in names:
        pick = itemgetter(*positions, names.index("granted"))
        return lambda values: _new(LeaseRow, pick(values))
    pick = itemgetter(*positions)
    return lambda values: _new(LeaseRow, (*pick(values), None))


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(0, 0, int(us))  # positional: cheaper than microseconds=…


def to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def to_record(row: LeaseRow) -> LeaseRecord:
    if row.slots is not None:
        return semaphore_record(row)
    holder, acquired, expires, past = row.holder, row.acquired_us, row.expires_us, row.past
    value, revoked, successor = row.lease_value, bool(row.revoked), row.successor
    released = bool(row.released)
    token = int(row.fencing_token)
    return LeaseRecord(
        key=row.lease_key,
        holder=holder,
        fencing_token=token,
        ttl=int(row.ttl_us) / 1_000_000,
        acquired_at=from_us(acquired),
        renewed_at=from_us(row.renewed_us),
        expires_at=from_us(expires),
        transitions=int(row.transitions),
        released=released,
        revision=int(row.revision),
        # Parsed only when asked for (history, watch): acquire and renew never are.
        history=LazyTerms(
            lambda: terms(
                past, holder, token, acquired, expires, released, value, revoked, successor
            )
        ),
        value=value,
        announced=bool(row.announced),
        revoked=revoked,
        successor=successor,
    )


def terms(
    past: Any,
    holder: str,
    token: int,
    acquired: int,
    expires: int,
    released: bool,
    value: str | None = None,
    revoked: bool = False,
    successor: str | None = None,
) -> list[Term]:
    """The closed terms of ``past`` (JSON text or already parsed), then the row's own."""
    if isinstance(past, (str, bytes)):
        past = json.loads(past)
    out = [
        Term(
            holder=t["h"],
            fencing_token=int(t["t"]),
            acquired_at=from_us(t["a"]),
            ended_at=from_us(t["e"]),
            ended_by=t["b"],
            value=t.get("v"),
        )
        for t in past
    ]
    out.append(
        Term(
            holder=holder,
            fencing_token=token,
            acquired_at=from_us(acquired),
            ended_at=from_us(expires) if released else None,
            ended_by=(
                ended_by_of(released=True, revoked=revoked, successor=successor)
                if released
                else None
            ),
            value=value,
        )
    )
    return out


def to_view(row: LeaseRow, allowance: float) -> LeaseView:
    return LeaseView(to_record(row), from_us(row.now_us), allowance)


def semaphore_record(row: LeaseRow) -> LeaseRecord:
    """A semaphore row: its columns are one slot; ``slots`` holds them all and the history."""
    from leaderelection_service.backends.sql.slot_rows import decode_slots

    slots, history = decode_slots(row.slots)
    return LeaseRecord(
        key=row.lease_key,
        holder=row.holder,
        fencing_token=int(row.fencing_token),
        ttl=int(row.ttl_us) / 1_000_000,
        acquired_at=from_us(row.acquired_us),
        renewed_at=from_us(row.renewed_us),
        expires_at=from_us(row.expires_us),
        transitions=int(row.transitions),
        released=bool(row.released),
        revision=int(row.revision),
        history=history,
        value=row.lease_value,
        announced=bool(row.announced),
        revoked=bool(row.revoked),
        limit=int(row.lease_limit),
        slots=slots,
    )


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every key starting with ``prefix`` (None: no bound).

    Keys and prefixes are ASCII letters, digits and ``._-``, so bumping the
    last character is always possible and never needs a LIKE pattern.
    """
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
