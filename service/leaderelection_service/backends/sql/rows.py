"""Rows of the lease table as ``records.LeaseRecord`` (the one definition of a record).

Example::

    view = to_view(row, allowance=0.0)   # row = (COLUMNS..., now_us)

Times in the table are integers, microseconds since the Unix epoch on the
database clock; ``past`` holds closed terms as compact JSON objects
``{"h": holder, "t": token, "a": acquired_us, "e": ended_us, "b": ended_by}``.
The current term is the row itself. The history is parsed only when asked
for (``records.LazyTerms``): acquire and renew answers never show it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from leaderelection_service.records import LazyTerms, LeaseRecord, LeaseView, Term

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Row = Sequence[Any]
"""A row of the lease table as a statement returns it."""
NOW_INDEX = 11
"""Where ``now_us`` sits in a returned row (after the 11 stored columns)."""


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(0, 0, int(us))  # positional: cheaper than microseconds=…


def to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def to_record(row: Sequence[Any]) -> LeaseRecord:
    (key, holder, token, ttl_us, acquired, renewed, expires, transitions, released, revision,
     past) = row[:NOW_INDEX]  # fmt: skip
    released = bool(released)
    token = int(token)
    return LeaseRecord(
        key=key,
        holder=holder,
        fencing_token=token,
        ttl=int(ttl_us) / 1_000_000,
        acquired_at=from_us(acquired),
        renewed_at=from_us(renewed),
        expires_at=from_us(expires),
        transitions=int(transitions),
        released=released,
        revision=int(revision),
        # Parsed only when asked for (history, watch): acquire and renew never are.
        history=LazyTerms(lambda: terms(past, holder, token, acquired, expires, released)),
    )


def terms(
    past: Any, holder: str, token: int, acquired: int, expires: int, released: bool
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
        )
        for t in past
    ]
    out.append(
        Term(
            holder=holder,
            fencing_token=token,
            acquired_at=from_us(acquired),
            ended_at=from_us(expires) if released else None,
            ended_by="released" if released else None,
        )
    )
    return out


def to_view(row: Sequence[Any], allowance: float) -> LeaseView:
    return LeaseView(to_record(row), from_us(row[NOW_INDEX]), allowance)


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every key starting with ``prefix`` (None: no bound).

    Keys and prefixes are ASCII letters, digits and ``._-``, so bumping the
    last character is always possible and never needs a LIKE pattern.
    """
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
