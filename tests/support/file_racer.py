"""A process that races another for the same keys on one file backend directory.

    python tests/support/file_racer.py DIR NAME KEYS

Prints ``ready``, then answers one command per line on stdin with one JSON
line on stdout:

- ``acquire N``: acquires every key at once (one asyncio task each, so the
  writes go in batches) as holder ``NAME-N``; answers ``{key: [outcome,
  fencing_token, holder of the record it was answered]}`` and the batches
  committed so far;
- ``release``: releases every key this process holds; answers ``{key: outcome}``;
- ``exit``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from leaderelection_service.backends.file import FileStore
from leaderelection_service.lease_errors import LeaseError
from leaderelection_service.lease_rules import CasLeases


async def main(directory: str, name: str, keys: list[str]) -> None:
    store = FileStore(directory)
    leases = CasLeases(store)
    held: dict[str, tuple[str, int]] = {}
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).split():
            if line[0] == "acquire":
                holder = f"{name}-{line[1]}"

                async def acquire(key: str, holder: str = holder) -> list[object]:
                    try:
                        view = await leases.acquire(key, holder, 600.0)
                    except LeaseError as exc:
                        lease = exc.lease.record if exc.lease else None
                        return [exc.code, lease and lease.fencing_token, lease and lease.holder]
                    held[key] = (holder, view.record.fencing_token)
                    return ["granted", view.record.fencing_token, view.record.holder]

                outcomes = await asyncio.gather(*(acquire(k) for k in keys))
                answer = {"outcomes": dict(zip(keys, outcomes, strict=True))}
                print(json.dumps(answer | {"batches": store.batches}), flush=True)
            elif line[0] == "release":
                released = {}
                for key, (holder, token) in held.items():
                    await leases.release(key, holder, token)
                    released[key] = "released"
                held.clear()
                print(json.dumps(released), flush=True)
            else:
                break
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(",")))
