"""Delete and the token floor: fencing tokens never repeat for a key, deleted or not.

Example::

    await leases.delete("job-41")          # the key is gone; the floor is now >= its last token
    view = await leases.acquire("job-41", "host-a", 10.0)
    view.record.fencing_token              # floor + 1: above every token job-41 ever had

**The floor.** Each backend keeps one number, its floor: at least the last
fencing token and the last revision + 1 of every record it ever deleted
(``floor_after``). A key's first record (an acquire that finds no record)
starts at ``floor + 1``, for its token and its revision alike (``numbered``).
So a deleted key that is acquired again continues above every token it had,
and its versions (the watch stream's, the file store's compare-and-set) go
on increasing too. The first token of a brand-new key is therefore
``floor + 1``, which is 1 only on a backend that never deleted anything.

Rejected: a floor per key (a tombstone per deleted key is what delete is
there to remove), and tokens unique across all keys (a counter every acquire
of a new term would have to write: one more compare-and-set, on GCS a write
to one shared object that takes about one per second).

**Why it is safe over a compare-and-set store** (``CasLeases``: memory,
file, GCS). Delete (``delete_key``) reads the record (version V), refuses a
held lease, then raises the floor durably (``RecordStore.raise_floor``), and
only then removes the record if its version is still V
(``RecordStore.delete``). An acquire that creates a key's first record reads
the record (absent), then the floor, then creates the record if it is still
absent. Take a delete of token T and an acquire that reads "absent" after
that delete: the floor was raised to >= T before the record was removed,
hence before that read, hence before the acquire's floor read, which so sees
>= T, and the acquire answers > T. An acquire that read "absent" *before*
the key was created must still create it: if it does, that key's whole life
(created, released, deleted) fell between its floor read and its create, and
its floor read may have missed the raise. So after creating, the acquire
reads the floor once more (``settled``): every delete that finished before
the create raised the floor before it, so a floor still below the new token
proves no deleted record had that token; otherwise the record, which no
caller has been answered with yet, is renumbered above the floor (a
compare-and-set on the version just written) and checked again.

The SQL backends keep the floor in a table and state the same rule in their
statements (``backends/sql/floor.py``).
"""

from __future__ import annotations

from dataclasses import replace

from leaderelection_service.lease_errors import BackendUnavailable, WriteConflict
from leaderelection_service.records import LeaseRecord
from leaderelection_service.storage import RecordStore

SETTLE_ATTEMPTS = 8
"""Renumberings of a new key's first record before its acquire answers 503."""


def floor_after(record: LeaseRecord) -> int:
    """The least floor once ``record`` is deleted: above its token, and above its revision
    by one (the ``deleted`` watch event's version is ``2 * (revision + 1)``)."""
    slots = (s.fencing_token for s in record.slots)  # a semaphore key's grants
    return max(record.fencing_token, record.revision + 1, *slots)


def numbered(first: LeaseRecord, floor: int) -> LeaseRecord:
    """A key's first record (token 1, revision 1 as ``new_term`` makes it) started at
    ``floor + 1``. Renumbering one already written also moves its revision past the
    written one, so its versions never go back."""
    token = floor + 1
    if first.fencing_token == token and first.revision == token:
        return first
    revision = token if first.revision == 1 else max(token, first.revision + 1)
    history = tuple(replace(t, fencing_token=token) for t in first.history)
    # a semaphore key's first record holds one slot: the grant it numbers
    slots = tuple(replace(s, fencing_token=token) for s in first.slots)
    return replace(first, fencing_token=token, revision=revision, history=history, slots=slots)


async def settled(store: RecordStore, key: str, record: LeaseRecord, version: int) -> LeaseRecord:
    """The created first record of ``key``, renumbered above the floor if a delete
    raised the floor past it between the acquire's floor read and its create.

    Another write may land on the new record meanwhile (its holder's own
    retried acquire, a revoke): then the record as it now is gets renumbered,
    as long as it is still the key's first term. A record gone again, or one
    that already has a second term, answers 503: the caller retries.
    """
    for _ in range(SETTLE_ATTEMPTS):
        floor = await store.read_floor()
        if floor < record.fencing_token:
            return record
        fixed = numbered(record, floor)
        try:
            version = await store.write(key, fixed, version)
            record = fixed
        except WriteConflict:
            cur = await store.read(key)
            if cur is None or len(cur.record.history) != 1:
                break
            record, version = cur.record, cur.version
    raise BackendUnavailable(
        f"lease {key!r} was deleted and created again while it was acquired; retry",
        retry_after=1.0,
        kind="the lease is contended by concurrent writes; retry",
    )
