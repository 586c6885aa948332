"""The two storage surfaces a backend may offer.

``RecordStore`` is the small one: read one record with its version, and
compare-and-set one record. The lease rules (``leases.CasLeases``) run on top
of it, with the service host's clock deciding expiry. The file and GCS
backends are record stores.

``LeaseBackend`` is what the HTTP layer calls. ``CasLeases`` turns any record
store into one. A backend whose own clock must decide expiry inside a single
statement (SQL: the database's ``clock_timestamp()``) implements
``LeaseBackend`` directly, stating the same rules in that statement; the one
contract suite in ``tests/`` holds every backend to the same table.

Every method is required; real differences are declared in ``Capabilities``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from leaderelection_service.records import LeaseRecord, LeaseView


@dataclass(frozen=True, slots=True)
class Capabilities:
    shared_across_hosts: bool
    """Several service hosts may share this backend (False: one host only)."""
    change_notification: bool
    """The backend pushes changes (else watchers poll it)."""


@dataclass(frozen=True, slots=True)
class Versioned:
    record: LeaseRecord
    version: int
    """Opaque to the rules: a file revision, a GCS generation."""


@runtime_checkable
class RecordStore(Protocol):
    capabilities: Capabilities
    description: str
    """What the start-up log line and ``/readyz`` say, without secrets."""

    async def read(self, key: str) -> Versioned | None:
        """The record of ``key`` and its version, or None if never written."""
        ...

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        """Store ``record`` if the current version is ``expected`` (None: absent).

        Returns the new version; raises ``WriteConflict`` otherwise, and
        ``BackendUnavailable`` when the store cannot be reached. Durable before
        it returns.
        """
        ...

    async def scan(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        """Records whose key starts with ``prefix``, ordered by key, after ``after``."""
        ...

    async def delete(self, key: str, expected: int) -> None:
        """Remove the record of ``key`` if its version is ``expected``, durably.

        Raises ``WriteConflict`` otherwise (or when it is absent). The floor
        (``token_floor.py``) must have been raised first.
        """
        ...

    async def read_floor(self) -> int:
        """The store's token floor (0 when nothing was ever deleted)."""
        ...

    async def raise_floor(self, at_least: int) -> None:
        """Make the floor at least ``at_least``, durably, before returning; never lower it."""
        ...

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the store answers."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class LeaseBackend(Protocol):
    capabilities: Capabilities
    description: str

    async def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        value: str | None = None,
        limit: int = 1,
        may_change_limit: bool = False,
    ) -> LeaseView:
        """``limit`` > 1: a semaphore key (``semaphore_rules``); ``may_change_limit``:
        an admin's acquire, which sets another limit on a held key."""
        ...

    async def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None,
        value: str | None = None,
        announce: bool = False,
    ) -> LeaseView:
        """``value`` None keeps the value; ``announce``: a new one is told to every watcher."""
        ...

    async def release(self, key: str, holder: str, fencing_token: int) -> LeaseView: ...

    async def revoke(self, key: str) -> LeaseView:
        """End the current term now (an operator's act): the record, ``revoked``."""
        ...

    async def delete(self, key: str) -> LeaseView:
        """Remove a key whose lease is not held (an operator's act): its last record.

        ``LeaseHeld`` while held, ``LeaseNotFound`` without a record. A later
        acquire of the key starts above every token it had (``token_floor.py``).
        """

    async def transfer(
        self, key: str, to: str, holder: str | None = None, fencing_token: int | None = None
    ) -> LeaseView:
        """Hand the lease to ``to``: by its holder (``holder``, ``fencing_token``) ending
        its term now, or by an operator (both None) naming it on the held term."""
        ...

    async def get(self, key: str) -> LeaseView: ...

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def wait_for_change(self, timeout: float) -> frozenset[str] | None:
        """Return soon after a write that may have changed some key, or after ``timeout``.

        Returns the keys written since the last call, or None when which keys
        is not known (the watch hub then re-reads everything it watches). A
        backend with change notification (PostgreSQL ``LISTEN``) returns when
        told of any replica's write; the others return at once for this
        process's own writes and otherwise after ``timeout`` (the watch
        stream's polling interval), with the keys this process wrote.
        """
        ...
