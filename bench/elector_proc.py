"""One candidate for the failover trials: a ``LeaderElector`` in its own process.

Example::

    python -m bench.elector_proc http://127.0.0.1:8080 bench-failover --term 2 --retry 0.25

Prints one line per event, each with ``time.monotonic()`` (one clock for every
process on the host, so the parent can subtract its own readings)::

    campaigning <t>     the client answered once; the elector starts now
    elected <t>         on_elected fired
    ousted <t>          on_ousting fired

SIGTERM stops the elector as a graceful shutdown does (step down, release)
and exits; SIGKILL is the crash.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import signal
import sys
import threading
import time

from leaderelection import Config, LeaderElector, LeaseClient, LeaseNotFound


def say(what: str) -> None:
    sys.stdout.write(f"{what} {time.monotonic():.6f}\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("--identity")
    p.add_argument("--term", type=float, default=2.0)
    p.add_argument("--renew", type=float, default=0.5)
    p.add_argument("--retry", type=float, default=0.25)
    p.add_argument("--watch", action="store_true", help="wait on the watch stream")
    args = p.parse_args()
    client = LeaseClient(args.url)
    with contextlib.suppress(LeaseNotFound):
        client.get(args.key)  # warm up: imports done, connection open
    extra: dict[str, bool] = {}
    has_watch = "watch" in inspect.signature(LeaderElector).parameters
    if args.watch and not has_watch:
        print("this client has no watch option", file=sys.stderr)
        return 3
    if has_watch:
        extra["watch"] = args.watch  # the client watches by default: say which, either way
    elector = LeaderElector(
        client,
        args.key,
        identity=args.identity,
        config=Config(term=args.term, renew=args.renew, retry=args.retry),
        on_elected=lambda me, cancel: say("elected"),
        on_ousting=lambda me, cancel: say("ousted"),
        **extra,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    say("campaigning")
    elector.start()
    stop.wait()
    elector.stop()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
