"""A semaphore key's row: the record in the lease table's columns, to write and to read.

Example::

    params = row_params(record)      # every column, for semaphore_path's INSERT or UPDATE
    slots, history = decode_slots(row.slots)

A semaphore row keeps its columns as for a plain lease (they describe one
slot: the one the last write concerned), ``lease_limit`` its limit, and
``slots`` a JSON object ``{"slots": [...], "terms": [...]}``: every slot in
the stored form of ``slots.Slot`` and the history (``records.Term``'s public
form). ``past`` stays an empty array. A plain lease, also when the semaphore
path writes one (a key returned to limit 1), has ``slots`` NULL and ``past``
its closed terms, exactly as the single statements write it; the statements
refuse any row whose ``slots`` is not NULL, so they never misread one.
Rejected: a table of slots beside the lease table (a row per slot), since a
grant would then write two tables and the one-row compare-and-set on
``revision`` would no longer cover the count of holders.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from leaderelection_service.backends.sql.rows import EPOCH, to_us
from leaderelection_service.records import LeaseRecord, Term
from leaderelection_service.slots import Slot


def _us(t: datetime) -> int:
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def decode_slots(data: Any) -> tuple[tuple[Slot, ...], tuple[Term, ...]]:
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    slots = tuple(Slot.from_storage(s) for s in data["slots"])
    terms = tuple(Term.from_public(t) for t in data.get("terms", ()))
    return slots, terms


def _closed_terms(rec: LeaseRecord) -> str:
    """``past`` of a plain row: the closed terms before the current one, compact."""
    out = []
    for t in rec.history:
        if t.fencing_token == rec.fencing_token or t.ended_at is None:
            continue
        item: dict[str, Any] = {
            "h": t.holder,
            "t": t.fencing_token,
            "a": _us(t.acquired_at),
            "e": _us(t.ended_at),
            "b": t.ended_by,
            "v": t.value,
        }
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def row_params(rec: LeaseRecord) -> dict[str, Any]:
    """Every column of ``rec``'s row, by name (``lease_key`` as ``key``)."""
    if rec.slots:
        slots: str | None = json.dumps(
            {
                "slots": [s.to_storage() for s in rec.slots],
                "terms": [t.to_public() for t in rec.history],
            },
            separators=(",", ":"),
        )
        past = "[]"
    else:
        slots, past = None, _closed_terms(rec)
    return {
        "key": rec.key,
        "holder": rec.holder,
        "fencing_token": rec.fencing_token,
        "ttl_us": to_us(rec.ttl),
        "acquired_us": _us(rec.acquired_at),
        "renewed_us": _us(rec.renewed_at),
        "expires_us": _us(rec.expires_at),
        "transitions": rec.transitions,
        "released": rec.released,
        "revision": rec.revision,
        "past": past,
        "lease_value": rec.value,
        "announced": rec.announced,
        "revoked": rec.revoked,
        "successor": rec.successor,
        "lease_limit": rec.limit,
        "slots": slots,
    }
