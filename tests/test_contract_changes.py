"""Rule "changes are told" (docs/watch.md), once, against every backend.

After a write, ``wait_for_change`` names the key written, or says it cannot
tell which keys changed (None), before a deadline, and never names a key
nobody wrote: the watch hub reads only the keys it is told, so a backend that
dropped a key would lose that change for every watcher.
"""

from __future__ import annotations

import time

from leaderelection_service.storage import LeaseBackend


async def _told(backend: LeaseBackend, key: str, deadline_s: float = 10.0) -> frozenset[str] | None:
    deadline = time.monotonic() + deadline_s
    while True:
        keys = await backend.wait_for_change(0.2)
        if keys is None or key in keys:
            return keys
        assert keys <= {key}, f"told of keys nobody wrote: {sorted(keys)}"
        assert time.monotonic() < deadline, f"the write of {key!r} was never told"


async def test_a_write_is_told_with_its_key_or_as_unknown(lease_backend: LeaseBackend) -> None:
    await lease_backend.wait_for_change(0)  # a backend that listens starts listening
    lease = await lease_backend.acquire("told.a", "a", 30)
    await _told(lease_backend, "told.a")
    await lease_backend.release("told.a", "a", lease.record.fencing_token)
    await _told(lease_backend, "told.a")
