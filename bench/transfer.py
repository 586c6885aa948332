"""Transfer to a chosen successor: how soon it leads after ``elector.transfer(to)``.

Example::

    .venv/bin/python bench/transfer.py                    # file backend, 20 trials
    .venv/bin/python bench/transfer.py --trials 50 --backend-url postgresql://127.0.0.1/test

Each trial: a leader ``LeaderElector`` is elected; its successor (on its own
client, ``retry`` = ``--retry``) and a bystander wait; the leader's
``transfer("successor")`` steps down and sends one transfer request; the
figure is the time from just before that call until the successor's
``on_elected`` fires, both on this process's monotonic clock. The successor
follows the watch stream, which wakes it on the ``transferred`` event; the
bystander is refused for one ttl, so only the named candidate can win. Prints
median, 90th percentile and max; with ``--polling`` also the same with the
successor polling every ``retry`` (``watch=False``), for comparison.
Rejected: measuring an operator's transfer here (its figure is the holder's
renew interval plus this one: it says nothing more about the service).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs
from bench.handoff import summary
from leaderelection import Config, LeaderElector, LeaseClient


def one_trial(url: str, key: str, retry: float, watch: bool) -> float:
    config = Config(term=10, renew=3, retry=retry)
    elected = threading.Event()
    with LeaseClient(url) as lc, LeaseClient(url) as sc, LeaseClient(url) as bc:
        leader = LeaderElector(lc, key, identity="leader", config=config, watch=False)
        leader.start()
        if not leader.wait_for_leadership(10):
            raise RuntimeError("the leader was not elected")
        successor = LeaderElector(
            sc,
            key,
            identity="successor",
            config=config,
            watch=watch,
            on_elected=lambda me, cancel: elected.set(),
        )
        bystander = LeaderElector(bc, key, identity="bystander", config=config, watch=watch)
        successor.start()
        bystander.start()
        time.sleep(0.3)  # let both fail one acquire and open their streams
        started = time.monotonic()
        handed = leader.transfer("successor")
        if handed is None:
            raise RuntimeError("the leader handed nothing on")
        if not elected.wait(retry * 3 + 10):
            raise RuntimeError("the successor did not take over")
        took = time.monotonic() - started
        if bystander.is_leader:
            raise RuntimeError("the bystander led during the successor's window")
        bystander.stop()
        successor.stop()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend-url", help="default: a fresh file backend in a temp directory")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--retry", type=float, default=2.0, help="the successor's retry, seconds")
    ap.add_argument("--polling", action="store_true", help="also measure without the stream")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp, contextlib.ExitStack() as st:
        url = args.backend_url or (Path(tmp) / "data").as_uri()
        svc = st.enter_context(procs.service(url, workers=1, log=Path(tmp) / "svc.log"))
        print(
            f"backend {url.split('@')[-1]}, successor retry {args.retry:g} s, "
            f"{args.trials} trials each",
            flush=True,
        )
        modes = [("transfer, watch stream", True)]
        if args.polling:
            modes.append(("transfer, polling every retry", False))
        for name, watch in modes:
            figures = [
                one_trial(svc.url, f"transfer-{watch:d}-{i}", args.retry, watch)
                for i in range(args.trials)
            ]
            print(summary(name, figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
