"""Section 1 and its ceilings: acquire and renew through the service, the
no-op endpoint, the raw statement on PostgreSQL, and the etcd peer.

Example::

    plan = service_plan(svc.url, target="file", op_keys=[("renew", 10_000, 64)])
    rows = run_rounds(plan + [ceiling_plan(...), *etcd_plan(...)], rounds=5, duration=8)

Every scenario runs on one hot key (``hot``) and on 10,000 distinct keys
(``k0`` … ``k9999``). Before a scenario the keys are acquired once by the
holder ``bench``; on a fresh backend each then has fencing token 1, which is
what the renew requests send (checked here, so a renew row never measures
409s by mistake). acquire is the holder's own idempotent acquire (it extends
the lease: a write); ``contend`` is rivals acquiring the held hot key, whose
409 answers are counted apart, not as errors.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.wrk import WrkResult

HOLDER = "bench"
TTL = 3600  # no lease may lapse between scenarios (a lapsed one re-acquired starts a new term)


@dataclass
class Row:
    target: str  # "file", "postgresql", "gcs", "no-op", "pg raw", "etcd"
    op: str
    keys: int
    conns: int
    res: WrkResult
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the machine is shared: keep the 1-minute load average beside each figure
        self.extra.setdefault("loadavg_1m", round(os.getloadavg()[0], 1))

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "op": self.op,
            "keys": self.keys,
            "conns": self.conns,
            **self.res.as_dict(),
            **self.extra,
        }


SERVICE_ENV = {"BENCH_HOLDER": HOLDER, "BENCH_TOKEN": "1", "BENCH_TTL": str(TTL)}


@dataclass
class Scenario:
    target: str  # "postgresql", "file", "memory", "bare ASGI", "no-op", "pg raw", "etcd"
    op: str  # "acquire", "renew", "contend"
    keys: int
    conns: int
    url: str = ""  # the wrk target; empty for ``run`` scenarios
    wrk_op: str = ""  # the lua script's op when it differs from ``op`` (etcd)
    env: dict[str, str] = field(default_factory=lambda: dict(SERVICE_ENV))
    extra: dict[str, object] = field(default_factory=dict)
    fresh_prefix: bool = False  # every run on keys never used (etcd's create-if-absent)
    run: Callable[[float], WrkResult] | None = None  # not wrk (the raw statement)


def key_name(i: int, keys: int) -> str:
    return "hot" if keys == 1 else f"k{i}"


def prepare(port: int, keys: int, ttl: float = TTL, parallel: int = 8) -> None:
    """Acquire every key once as ``bench``; raise unless each has token 1."""
    bad: list[str] = []

    def run(part: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"holder": HOLDER, "ttl": ttl})
        try:
            for i in range(part, keys, parallel):
                key = key_name(i, keys)
                conn.request(
                    "POST",
                    f"/v1/leases/{key}/acquire",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or json.loads(data)["fencing_token"] != 1:
                    bad.append(f"{key}: {resp.status} {data[:200]!r}")
        except OSError as exc:
            bad.append(str(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(p,)) for p in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bad:
        raise RuntimeError(f"pre-acquire failed for {len(bad)} keys, e.g. {bad[0]}")


def service_plan(url: str, *, target: str, op_keys: list[tuple[str, int, int]]) -> list[Scenario]:
    """The service's scenarios: (op, keys, conns) each, keys pre-acquired by ``prepare``."""
    return [Scenario(target, op, keys, c, url) for op, keys, c in op_keys]


def ceiling_plan(url: str, *, target: str, keys: int, conns: int) -> Scenario:
    """A ceiling app's renew: same script, same bodies, nothing behind the route."""
    return Scenario(target, "renew", keys, conns, url)


def pg_raw_plan(dsn: str, *, op: str, keys: int, conns: int) -> Scenario:
    from bench.pg_ceiling import run_pg_ceiling

    extra: dict[str, object] = {}

    def run(duration: float) -> WrkResult:
        res, origin = run_pg_ceiling(dsn, op=op, keys=keys, connections=conns, duration=duration)
        extra["statement"] = origin
        return res

    return Scenario("pg raw", op, keys, conns, run=run, extra=extra)


def etcd_plan(url: str, *, lease0: int, keys: int, conns: int, acquire: bool) -> list[Scenario]:
    """etcd's keep-alive on ``keys`` leases and, if ``acquire``, its create-if-absent txn."""
    env = {"BENCH_LEASE": str(lease0)}
    out = [
        Scenario(
            "etcd", "renew", keys, conns, url, "etcd_keepalive", env, {"how": "lease keep-alive"}
        )
    ]
    if acquire:
        how = "create-if-absent txn with a lease, fresh keys"
        out.append(
            Scenario("etcd", "acquire", keys, conns, url, "etcd_create", env, {"how": how}, True)
        )
    return out


def brief(res: WrkResult) -> str:
    return (
        f"{res.rps:8.0f}/s p50 {res.p50_ms:6.1f} ms p99 {res.p99_ms:6.1f} ms "
        f"409 {res.conflict} err {res.errors}"
    )
