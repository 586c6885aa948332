"""A fleet of leases written straight through the backend object, and the service's RSS.

Example::

    asyncio.run(populate("file:///tmp/leases", 20_000, release_every=10))
    with procs.service(url, workers=1, log=log) as svc:
        rss_mb(svc.pid)                 # resident MiB of the service process

Writing through the backend before the service starts keeps the set-up out
of the figures; going through HTTP instead was rejected because 20,000
acquires over loopback take longer than what the benchmarks then measure.
"""

from __future__ import annotations

import asyncio

from leaderelection_service.registry import open_backend
from leaderelection_service.settings import Settings


async def populate(url: str, count: int, *, release_every: int = 0) -> None:
    """Acquires ``fleet.000000``… held by seven hosts; releases every ``release_every``-th."""
    backend = open_backend(url, Settings(backend_url=url))
    try:
        for start in range(0, count, 500):
            views = await asyncio.gather(
                *(
                    backend.acquire(f"fleet.{n:06d}", f"host-{n % 7}", 3600)
                    for n in range(start, min(count, start + 500))
                )
            )
            if release_every:
                await asyncio.gather(
                    *(
                        backend.release(v.record.key, v.record.holder, v.record.fencing_token)
                        for v in views
                        if int(v.record.key[-6:]) % release_every == 0
                    )
                )
    finally:
        await backend.close()


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from /proc (0.0 if it has none)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
