"""One tenant's long keys against another tenant's renewals, file backend, in process.

    .venv/bin/python bench/long_keys.py [--seconds 5] [--renewers 32] [--attackers 4]
        [--length 125] [--dir DIR]

RENEWERS tasks each hold one key of tenant B and renew it in a loop; ATTACKERS
tasks acquire keys of tenant A that are LENGTH characters long, again and
again, so that their writes share batches with the renewals (issue 13: with
hex file names, a 125-character key's spare name passed the 255-byte limit and
failed its whole batch). Prints, for each side, the calls, how many answered
503, and the renewals' p50/p99 in milliseconds. Run it on the code before a
change with ``PYTHONPATH=<that source>/service`` to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from leaderelection_service.backends.file import FileStore
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.lease_rules import CasLeases


async def run(args: argparse.Namespace, directory: str) -> None:
    store = FileStore(directory)
    rules = CasLeases(store)
    tokens = {}
    for i in range(args.renewers):
        key = f"team-b.k{i}"
        tokens[key] = (await rules.acquire(key, "b", 60.0)).record.fencing_token
    stop = time.monotonic() + args.seconds
    renewals: list[float] = []
    failed = {"renew": 0, "attack": 0}
    attacks = 0

    async def renewer(key: str) -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                await rules.renew(key, "b", tokens[key], 60.0)
            except BackendUnavailable:
                failed["renew"] += 1
            renewals.append(time.perf_counter() - t0)

    async def attacker(n: int) -> None:
        nonlocal attacks
        key = ("team-a." + "z" * args.length)[: args.length - 1] + "abcdefgh"[n % 8]
        while time.monotonic() < stop:
            attacks += 1
            try:
                await rules.acquire(key, "a", 60.0)
            except BackendUnavailable:
                failed["attack"] += 1

    try:
        await asyncio.gather(
            *(renewer(k) for k in tokens), *(attacker(n) for n in range(args.attackers))
        )
    finally:
        await store.close()
    cuts = statistics.quantiles(renewals, n=100)
    print(
        f"renewals {len(renewals)} ({failed['renew']} answered 503, "
        f"{100 * failed['renew'] / len(renewals):.1f} %), "
        f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms; "
        f"long-key acquires {attacks} ({failed['attack']} answered 503); "
        f"batches {store.batches}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--renewers", type=int, default=32)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--length", type=int, default=125)
    parser.add_argument("--dir", default=os.getcwd())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="long-keys-") as directory:
        asyncio.run(run(args, directory))


if __name__ == "__main__":
    main()
