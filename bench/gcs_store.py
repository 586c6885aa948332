"""The gs:// record store against fake-gcs-server: what one call costs, and how
far worker threads carry concurrent calls.

Example::

    .venv/bin/python -m bench.gcs_store --ops 400 --concurrency 1 16 64

Prints, for each concurrency, renewals per second over distinct keys (each a
read and a generation-guarded write) and the p50/p99 of one renewal, once with
the HTTP connection pool the store sets up and once with requests' default
pool of 10. The emulator is in memory on loopback: these figures bound the
service's own overhead, not GCS's latency (tens of ms per write). It is the
one ``bench/run.py`` starts (``bench.targets``): the benchmarks never import
from ``tests/``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from requests.adapters import HTTPAdapter

from bench.targets import gcs_emulator
from leaderelection_service.backends.gcs import GcsStore
from leaderelection_service.lease_rules import CasLeases


def client(url: str, project: str) -> storage.Client:
    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


async def run(store: GcsStore, ops: int, concurrency: int) -> tuple[float, list[float]]:
    leases = CasLeases(store)
    keys = [f"k{i}" for i in range(concurrency)]
    tokens = {k: (await leases.acquire(k, "bench", 60.0)).record.fencing_token for k in keys}
    latencies: list[float] = []

    async def worker(key: str, n: int) -> None:
        for _ in range(n):
            t = time.perf_counter()
            await leases.renew(key, "bench", tokens[key], 60.0)
            latencies.append(time.perf_counter() - t)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k, ops // concurrency) for k in keys))
    return len(latencies) / (time.perf_counter() - began), latencies


def main() -> None:
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # "pool is full" per request
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, gcs_emulator(Path(workdir)) as (_, env):
        url, project = env["STORAGE_EMULATOR_HOST"], env["GOOGLE_CLOUD_PROJECT"]
        print(f"{'pool':>8} {'conc':>5} {'renew/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
        for pool in ("store", "default"):
            for conc in args.concurrency:
                c = client(url, project)
                bucket = c.create_bucket(f"bench-{uuid.uuid4().hex[:12]}").name
                store = GcsStore(bucket, "bench", client=c)
                if pool == "default":
                    c._http.mount("http://", HTTPAdapter())  # requests' pool of 10
                rate, lat = asyncio.run(run(store, args.ops, conc))
                lat.sort()
                p50 = statistics.median(lat) * 1e3
                p99 = lat[int(len(lat) * 0.99) - 1] * 1e3
                print(f"{pool:>8} {conc:>5} {rate:>8.0f} {p50:>7.1f} {p99:>7.1f}")
                c.close()


if __name__ == "__main__":
    main()
