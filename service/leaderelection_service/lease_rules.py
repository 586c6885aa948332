"""The lease rules, written once.

Example::

    leases = CasLeases(FileStore("/var/lib/leaderelection"))
    view = await leases.acquire("cron", holder="host-a", ttl=10.0)
    view.record.fencing_token      # 1 the first time, +1 on every new term
    await leases.renew("cron", "host-a", view.record.fencing_token, ttl=10.0)
    await leases.release("cron", "host-a", view.record.fencing_token)

The rules (docs/contract.md, "Operations"):

1. acquire is granted when the key has no record, or its lease was released,
   or it expired (``expires_at + clock_skew_allowance`` has passed). A new
   term begins: ``fencing_token + 1``, ``transitions + 1`` if the holder
   changed. If the caller already holds it, the call is idempotent: same
   token, expiry extended. Otherwise ``LeaseHeld`` with the current record.
2. renew is granted while the record names this holder and token and was not
   released, even past its expiry as long as no one took it since. Otherwise
   ``LeaseLost``; ``LeaseNotFound`` for a key never acquired.
3. release is granted under the same condition as renew; the lease is free at
   once and the record (with its token counter) is kept. Releasing an already
   released lease with the same holder and token succeeds and writes nothing.
4. delete removes a key whose lease is not held (``LeaseHeld`` while it is);
   a later acquire continues above its tokens (``token_floor.py``).
5. transfer names a successor (``decide_transfer``): by the holder it ends
   the term at once; by an operator the term goes on, but its renew is
   refused (``LeaseLost``). For one ttl after the term ended only the
   successor may acquire (``LeaseHeld`` for others); its term clears it.

``decide_*`` are pure functions of (current record, request, now). ``CasLeases``
applies them over any ``RecordStore``: read, decide, compare-and-set; if the
compare-and-set loses a race it reads again and decides anew, so a lost race
answers what the winner's record says, never a retried success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from leaderelection_service import semaphore_rules, token_floor
from leaderelection_service.change_signal import Changes
from leaderelection_service.contention import KeyLocks, backoff
from leaderelection_service.lease_errors import BackendUnavailable, WriteConflict
from leaderelection_service.records import LeaseRecord, LeaseView
from leaderelection_service.refusals import (
    acquire_refusal,
    held,
    lost,
    never_acquired,
    transfer_refusal,
    transferred_already,
)
from leaderelection_service.slots import held_slots, is_semaphore
from leaderelection_service.storage import RecordStore

Clock = Callable[[], datetime]
Decision = Callable[[LeaseRecord | None, datetime], LeaseRecord | None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def decide_acquire(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    ttl: float,
    now: datetime,
    allowance: float = 0.0,
    value: str | None = None,
) -> LeaseRecord:
    if current is None:
        return LeaseRecord.new_term(current, key=key, holder=holder, ttl=ttl, now=now, value=value)
    refusal = acquire_refusal(key, LeaseView(current, now, allowance), holder)
    if refusal is not None:
        raise refusal
    if not current.held_at(now, allowance):
        return LeaseRecord.new_term(current, key=key, holder=holder, ttl=ttl, now=now, value=value)
    return current.extended(ttl=ttl, now=now, value=value)


def _check_owner(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    fencing_token: int,
    now: datetime,
    allowance: float,
) -> LeaseRecord:
    if current is None:
        raise never_acquired(key)
    if current.holder != holder or current.fencing_token != fencing_token:
        raise lost(key, LeaseView(current, now, allowance), holder, fencing_token)
    return current


def decide_renew(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    fencing_token: int,
    ttl: float | None,
    now: datetime,
    allowance: float = 0.0,
    value: str | None = None,
    announce: bool = False,
) -> LeaseRecord:
    rec = _check_owner(
        current, key=key, holder=holder, fencing_token=fencing_token, now=now, allowance=allowance
    )
    if rec.released or rec.successor is not None:
        raise lost(key, LeaseView(rec, now, allowance), holder, fencing_token)
    return rec.extended(
        ttl=rec.ttl if ttl is None else ttl, now=now, value=value, announce=announce
    )


def decide_release(
    current: LeaseRecord | None,
    *,
    key: str,
    holder: str,
    fencing_token: int,
    now: datetime,
    allowance: float = 0.0,
) -> LeaseRecord | None:
    """The released record, or None when it is already released (nothing to write)."""
    rec = _check_owner(
        current, key=key, holder=holder, fencing_token=fencing_token, now=now, allowance=allowance
    )
    if rec.released:
        return None
    return rec.released_at(now)


def decide_transfer(
    current: LeaseRecord | None,
    *,
    key: str,
    to: str,
    holder: str | None,
    fencing_token: int | None,
    now: datetime,
    allowance: float = 0.0,
) -> LeaseRecord | None:
    """Rule "transfer": hand the lease to ``to``; None when already so (nothing to write).

    By its holder (``holder`` and ``fencing_token``): the term ends now, in the
    same write that names the successor, as a release would, so no renew can
    follow. By an operator (``holder`` None): the held term goes on, naming
    the successor; its holder's next renew is refused and it releases. Either
    way the lease is never free before its holder let go or its term lapsed.
    """
    if holder is None and current is None:
        raise never_acquired(key)
    if holder is not None:
        assert fencing_token is not None
        current = _check_owner(
            current,
            key=key,
            holder=holder,
            fencing_token=fencing_token,
            now=now,
            allowance=allowance,
        )
    assert current is not None
    view = LeaseView(current, now, allowance)
    refusal = transfer_refusal(key, view, to=to, holder=holder, fencing_token=fencing_token)
    if refusal is not None:
        raise refusal
    if transferred_already(current, to=to, holder=holder):
        return None
    if holder is not None:
        return current.released_at(now, successor=to)
    return current.handed_to(to)


def decide_revoke(current: LeaseRecord | None, *, key: str, now: datetime) -> LeaseRecord | None:
    """Rule "revoke": the current term ends now, held or lapsed; None when it already
    ended by a release or a revoke (nothing to write)."""
    if current is None:
        raise never_acquired(key)
    if current.released:
        return None
    return current.released_at(now, revoked=True)


def decide_delete(
    current: LeaseRecord | None, *, key: str, now: datetime, allowance: float = 0.0
) -> LeaseRecord:
    """Rule "delete": a key whose lease is not held (released, revoked or lapsed) may
    be removed; the record to remove, or the contract's refusal."""
    if current is None:
        raise never_acquired(key)
    if current.held_at(now, allowance) or held_slots(current, now, allowance):
        raise held(key, LeaseView(current, now, allowance))  # a semaphore: any slot held
    return current


def _contended(key: str) -> BackendUnavailable:
    # Every attempt lost its compare-and-set to another process: the state is
    # changing too fast to decide; the caller retries (never a wrong lease_lost).
    return BackendUnavailable(
        f"lease {key!r} is contended; retry",
        retry_after=1.0,
        kind="the lease is contended by concurrent writes; retry",
    )


class CasLeases:
    """The lease rules over a compare-and-set ``RecordStore``, timed by ``clock``.

    ``clock_skew_allowance`` delays every takeover of a lapsed lease by that
    many seconds: set it where several hosts' clocks decide (GCS).
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        clock: Clock = utc_now,
        clock_skew_allowance: float = 0.0,
        max_attempts: int = 16,
    ) -> None:
        self.store = store
        self.capabilities = store.capabilities
        self.description = store.description
        self._clock = clock
        self._allowance = clock_skew_allowance
        self._max_attempts = max_attempts
        self._changes = Changes()
        self._keys = KeyLocks()

    def _view(self, record: LeaseRecord, now: datetime) -> LeaseView:
        return LeaseView(record, now, self._allowance)

    async def _write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        version = await self.store.write(key, record, expected)
        self._changes.fire((key,))
        return version

    async def wait_for_change(self, timeout: float) -> frozenset[str] | None:
        """The keys this process wrote since the last call (other processes' writes
        are not told: the watch hub re-reads what it watches every poll interval)."""
        return await self._changes.wait(timeout)

    async def _change(self, key: str, decide: Decision) -> LeaseView:
        """Read, decide, compare-and-set; after a lost race, read and decide again.

        ``decide(current, now)`` returns the record to write, None when there
        is nothing to write, or raises the contract's error. A record of the
        current revision is nothing to write either, answered as it is (a
        semaphore's repeated release, focused on the caller's slot).
        """
        async with self._keys.hold(key):
            for attempt in range(self._max_attempts):
                if attempt > 1:
                    await asyncio.sleep(backoff(attempt))
                cur = await self.store.read(key)
                now = self._clock()
                new = decide(cur.record if cur else None, now)
                if new is None:
                    assert cur is not None
                    return self._view(cur.record, now)
                if cur is not None and new.revision == cur.record.revision:
                    return self._view(new, now)
                if cur is None:  # a key's first record starts above the floor
                    new = token_floor.numbered(new, await self.store.read_floor())
                try:
                    version = await self._write(key, new, cur.version if cur else None)
                except WriteConflict:
                    continue
                if cur is None:
                    new = await token_floor.settled(self.store, key, new, version)
                return self._view(new, now)
            raise _contended(key)

    async def acquire(
        self,
        key: str,
        holder: str,
        ttl: float,
        value: str | None = None,
        limit: int = 1,
        may_change_limit: bool = False,
    ) -> LeaseView:
        def decide(cur: LeaseRecord | None, now: datetime) -> LeaseRecord:
            if limit != 1 or is_semaphore(cur):
                return semaphore_rules.decide_acquire(
                    cur,
                    key=key,
                    holder=holder,
                    ttl=ttl,
                    now=now,
                    limit=limit,
                    allowance=self._allowance,
                    value=value,
                    may_change_limit=may_change_limit,
                )
            return decide_acquire(
                cur,
                key=key,
                holder=holder,
                ttl=ttl,
                now=now,
                allowance=self._allowance,
                value=value,
            )

        return await self._change(key, decide)

    async def renew(
        self,
        key: str,
        holder: str,
        fencing_token: int,
        ttl: float | None,
        value: str | None = None,
        announce: bool = False,
    ) -> LeaseView:
        return await self._change(
            key,
            lambda cur, now: (semaphore_rules.decide_renew if is_semaphore(cur) else decide_renew)(
                cur,
                key=key,
                holder=holder,
                fencing_token=fencing_token,
                ttl=ttl,
                now=now,
                allowance=self._allowance,
                value=value,
                announce=announce,
            ),
        )

    async def release(self, key: str, holder: str, fencing_token: int) -> LeaseView:
        return await self._change(
            key,
            lambda cur, now: (
                semaphore_rules.decide_release if is_semaphore(cur) else decide_release
            )(
                cur,
                key=key,
                holder=holder,
                fencing_token=fencing_token,
                now=now,
                allowance=self._allowance,
            ),
        )

    async def revoke(self, key: str) -> LeaseView:
        return await self._change(
            key,
            lambda cur, now: (
                semaphore_rules.decide_revoke if is_semaphore(cur) else decide_revoke
            )(cur, key=key, now=now),
        )

    async def delete(self, key: str) -> LeaseView:
        """Rule "delete": raise the floor durably, then remove the record if unchanged
        (why that order is safe: ``token_floor.py``)."""
        async with self._keys.hold(key):
            for attempt in range(self._max_attempts):
                if attempt > 1:
                    await asyncio.sleep(backoff(attempt))
                cur = await self.store.read(key)
                now = self._clock()
                gone = decide_delete(
                    cur.record if cur else None, key=key, now=now, allowance=self._allowance
                )
                assert cur is not None
                await self.store.raise_floor(token_floor.floor_after(gone))
                try:
                    await self.store.delete(key, cur.version)
                except WriteConflict:
                    continue
                self._changes.fire((key,))
                return self._view(gone, now)
            raise _contended(key)

    async def transfer(
        self, key: str, to: str, holder: str | None = None, fencing_token: int | None = None
    ) -> LeaseView:
        return await self._change(
            key,
            lambda cur, now: decide_transfer(
                cur,
                key=key,
                to=to,
                holder=holder,
                fencing_token=fencing_token,
                now=now,
                allowance=self._allowance,
            ),
        )

    async def get(self, key: str) -> LeaseView:
        cur = await self.store.read(key)
        if cur is None:
            raise never_acquired(key)
        return self._view(cur.record, self._clock())

    async def list(self, prefix: str, after: str | None, limit: int) -> list[LeaseView]:
        records = await self.store.scan(prefix, after, limit)
        now = self._clock()
        return [self._view(r, now) for r in records]

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        await self.store.close()
