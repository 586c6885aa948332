"""Interleaved rounds: every scenario once per round, the targets side by side in time.

Example::

    plan = [Scenario("postgresql", "renew", 10_000, 64, svc.url), ...]
    rows = run_rounds(plan, rounds=5, duration=8)

The machine is shared and drifts (the same command an hour apart ran at half
speed), so a ratio of two figures measured minutes apart says little. Each
round runs every scenario once, in the same order (service, ceilings, etcd),
so the two sides of a ratio are seconds apart; ``report`` then gives each
ratio per round and its median and spread over the rounds. Rejected: one long
run per scenario (drift lands between the two sides of a ratio) and a random
order per round (the order is fixed so that a reader can repeat it; the
rounds already spread the drift).
"""

from __future__ import annotations

from bench.throughput import Row, Scenario, brief
from bench.wrk import run_wrk


def run_rounds(plan: list[Scenario], *, rounds: int, duration: float) -> list[Row]:
    rows: list[Row] = []
    for r in range(rounds):
        if rounds > 1:
            print(f"-- round {r + 1} of {rounds}", flush=True)
        for i, s in enumerate(plan):
            if s.run is not None:
                res = s.run(duration)
            else:
                env = dict(s.env)
                if s.fresh_prefix:
                    env["BENCH_PREFIX"] = f"r{r}s{i}-"
                res = run_wrk(
                    s.url,
                    op=s.wrk_op or s.op,
                    keys=s.keys,
                    connections=s.conns,
                    duration=duration,
                    env=env,
                )
            row = Row(s.target, s.op, s.keys, s.conns, res, {**s.extra, "round": r + 1})
            rows.append(row)
            keys = "fresh" if s.fresh_prefix else s.keys
            print(
                f"  {s.target:10} {s.op:8} keys={keys:<6} c={s.conns:<3} {brief(res)}", flush=True
            )
    return rows
