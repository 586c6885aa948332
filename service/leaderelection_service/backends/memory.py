"""An in-process record store, for unit tests of the lease rules only.

Example::

    leases = CasLeases(MemoryStore(), clock=fake_clock)

It is not durable and not shared between processes; the URL ``memory://``
exists so tests can build an app without a disk.
"""

from __future__ import annotations

import asyncio
import bisect

from leaderelection_service.lease_errors import WriteConflict
from leaderelection_service.records import LeaseRecord
from leaderelection_service.storage import Capabilities, Versioned


class MemoryStore:
    capabilities = Capabilities(shared_across_hosts=False, change_notification=False)
    description = "memory (not durable)"

    def __init__(self) -> None:
        self._records: dict[str, Versioned] = {}
        self._keys: list[str] = []
        self._lock = asyncio.Lock()
        self._floor = 0
        self._writes = 0  # versions are never reused, even for a key deleted and created again

    async def read(self, key: str) -> Versioned | None:
        return self._records.get(key)

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        async with self._lock:
            cur = self._records.get(key)
            if (cur.version if cur else None) != expected:
                raise WriteConflict(key)
            self._writes += 1
            version = self._writes
            if cur is None:
                bisect.insort(self._keys, key)
            self._records[key] = Versioned(record, version)
            return version

    async def delete(self, key: str, expected: int) -> None:
        async with self._lock:
            cur = self._records.get(key)
            if cur is None or cur.version != expected:
                raise WriteConflict(key)
            del self._records[key]
            self._keys.remove(key)

    async def read_floor(self) -> int:
        return self._floor

    async def raise_floor(self, at_least: int) -> None:
        self._floor = max(self._floor, at_least)

    async def scan(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        start = bisect.bisect_right(self._keys, after) if after else 0
        out: list[LeaseRecord] = []
        for key in self._keys[start:]:
            if len(out) >= limit:
                break
            if key.startswith(prefix):
                out.append(self._records[key].record)
        return out

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
