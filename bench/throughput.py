"""Section 1 and its ceilings: acquire and renew through the service, the
no-op endpoint, the raw statement on PostgreSQL, and the etcd peer.

Example::

    rows = service_rows(svc.url, backend="file", conns=[1, 16, 64], duration=10)

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
from dataclasses import dataclass, field
from typing import Any

from bench.wrk import WrkResult, run_wrk

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


def service_rows(
    url: str, *, target: str, conns: list[int], keyspaces: list[int], duration: float
) -> list[Row]:
    port = int(url.rsplit(":", 1)[1])
    env = {"BENCH_HOLDER": HOLDER, "BENCH_TOKEN": "1", "BENCH_TTL": str(TTL)}
    rows: list[Row] = []
    for keys in keyspaces:
        prepare(port, keys)
        for op in ("acquire", "renew"):
            for c in conns:
                res = run_wrk(url, op=op, keys=keys, connections=c, duration=duration, env=env)
                rows.append(Row(target, op, keys, c, res))
                print(f"  {target:10} {op:8} keys={keys:<6} c={c:<3} {_brief(res)}", flush=True)
        if keys == 1:
            for c in conns:
                res = run_wrk(url, op="contend", keys=1, connections=c, duration=duration, env=env)
                rows.append(Row(target, "contend", 1, c, res))
                print(f"  {target:10} contend  keys=1      c={c:<3} {_brief(res)}", flush=True)
    return rows


def noop_rows(url: str, *, conns: list[int], keys: int, duration: float) -> list[Row]:
    rows = []
    env = {"BENCH_HOLDER": HOLDER, "BENCH_TOKEN": "1", "BENCH_TTL": str(TTL)}
    for c in conns:
        res = run_wrk(url, op="renew", keys=keys, connections=c, duration=duration, env=env)
        rows.append(Row("no-op", "renew", keys, c, res))
        print(f"  no-op      renew    keys={keys:<6} c={c:<3} {_brief(res)}", flush=True)
    return rows


def pg_raw_rows(dsn: str, *, conns: list[int], keyspaces: list[int], duration: float) -> list[Row]:
    from bench.pg_ceiling import run_pg_ceiling
    from bench.targets import NotAvailable

    rows = []
    for keys in keyspaces:
        for op in ("acquire", "renew"):
            for c in conns:
                try:
                    res, origin = run_pg_ceiling(
                        dsn, op=op, keys=keys, connections=c, duration=duration
                    )
                except NotAvailable as exc:
                    print(f"  pg raw     {op:8} keys={keys:<6} c={c:<3} not available: {exc}")
                    continue
                rows.append(Row("pg raw", op, keys, c, res, {"statement": origin}))
                print(f"  pg raw     {op:8} keys={keys:<6} c={c:<3} {_brief(res)}", flush=True)
    return rows


def etcd_rows(etcd: Any, *, conns: list[int], keyspaces: list[int], duration: float) -> list[Row]:
    lease0 = 1000
    etcd.grant_leases(first=lease0, count=max(keyspaces), ttl=3600)
    rows = []
    for keys in keyspaces:
        for c in conns:
            res = run_wrk(
                etcd.url,
                op="etcd_keepalive",
                keys=keys,
                connections=c,
                duration=duration,
                env={"BENCH_LEASE": str(lease0)},
            )
            rows.append(Row("etcd", "renew", keys, c, res, {"how": "lease keep-alive"}))
            print(f"  etcd       renew    keys={keys:<6} c={c:<3} {_brief(res)}", flush=True)
    for run, c in enumerate(conns):
        # a fresh key prefix per run: every create finds its key absent
        env = {"BENCH_LEASE": str(lease0), "BENCH_PREFIX": f"r{run}-"}
        res = run_wrk(
            etcd.url,
            op="etcd_create",
            keys=max(keyspaces),
            connections=c,
            duration=duration,
            env=env,
        )
        rows.append(
            Row(
                "etcd",
                "acquire",
                max(keyspaces),
                c,
                res,
                {"how": "create-if-absent txn with a lease, fresh keys"},
            )
        )
        print(f"  etcd       acquire  fresh keys  c={c:<3} {_brief(res)}", flush=True)
    return rows


def _brief(res: WrkResult) -> str:
    return (
        f"{res.rps:8.0f}/s p50 {res.p50_ms:6.1f} ms p99 {res.p99_ms:6.1f} ms "
        f"409 {res.conflict} err {res.errors}"
    )
