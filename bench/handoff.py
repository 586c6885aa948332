"""Graceful handoff (L2): how soon a waiting follower leads after the leader releases.

Example::

    .venv/bin/python bench/handoff.py                    # file backend, 20 trials
    .venv/bin/python bench/handoff.py --trials 50 --backend-url postgresql://127.0.0.1/test
    .venv/bin/python bench/handoff.py --replicas 2       # follower on another service replica

Each trial: a leader ``LeaderElector`` is elected; a follower (on its own
client, with ``retry`` = ``--retry``) waits; the leader's ``stop()`` releases
the lease; the figure is the time from just before that release is sent until
the follower's ``on_elected`` fires, both on this process's monotonic clock.
It runs once with the follower waiting on the watch stream and once polling
(``watch=False``), and prints median, 90th percentile and max of each. With
``--replicas 2`` the follower talks to a second service on the same backend,
so the release reaches it through the backend (``LISTEN/NOTIFY`` on
PostgreSQL, polling every ``--watch-poll-interval`` elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs
from leaderelection import Config, LeaderElector, LeaseClient


def one_trial(leader_url: str, follower_url: str, key: str, retry: float, watch: bool) -> float:
    config = Config(term=10, renew=3, retry=retry)
    elected = threading.Event()
    with LeaseClient(leader_url) as lc, LeaseClient(follower_url) as fc:
        leader = LeaderElector(lc, key, identity="leader", config=config, watch=False)
        leader.start()
        if not leader.wait_for_leadership(10):
            raise RuntimeError("the leader was not elected")
        follower = LeaderElector(
            fc,
            key,
            identity="follower",
            config=config,
            watch=watch,
            on_elected=lambda me, cancel: elected.set(),
        )
        follower.start()
        time.sleep(0.3)  # let the follower fail one acquire and open its stream
        started = time.monotonic()
        leader.stop()
        if not elected.wait(retry * 3 + 10):
            raise RuntimeError("the follower did not take over")
        took = time.monotonic() - started
        follower.stop()
    return took


def summary(name: str, figures: list[float]) -> str:
    ms = sorted(f * 1000 for f in figures)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return (
        f"{name:<28} n={len(ms):<3} median {statistics.median(ms):8.1f} ms"
        f"   p90 {p90:8.1f} ms   max {ms[-1]:8.1f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend-url", help="default: a fresh file backend in a temp directory")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--retry", type=float, default=2.0, help="the follower's retry, seconds")
    ap.add_argument("--replicas", type=int, choices=(1, 2), default=1)
    ap.add_argument("--watch-poll-interval", type=float, default=1.0)
    ap.add_argument("--skip-polling", action="store_true", help="only the watch-stream figures")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as tmp, contextlib.ExitStack() as st:
        url = args.backend_url or (Path(tmp) / "data").as_uri()
        extra = ("--watch-poll-interval", str(args.watch_poll_interval))
        services = [
            st.enter_context(
                procs.service(url, workers=1, log=Path(tmp) / f"svc{i}.log", extra=extra)
            )
            for i in range(args.replicas)
        ]
        leader_url, follower_url = services[0].url, services[-1].url
        print(
            f"backend {url.split('@')[-1]}, {args.replicas} replica(s), follower retry "
            f"{args.retry:g} s, {args.trials} trials each",
            flush=True,
        )
        modes = [("watch stream", True)] + (
            [] if args.skip_polling else [("polling every retry", False)]
        )
        for name, watch in modes:
            figures = [
                one_trial(leader_url, follower_url, f"handoff-{watch:d}-{i}", args.retry, watch)
                for i in range(args.trials)
            ]
            print(summary(name, figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
