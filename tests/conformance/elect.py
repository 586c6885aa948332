"""The Python elector's conformance adapter: one ``LeaderElector`` for one key, as JSON lines.

Example::

    .venv/bin/python tests/conformance/elect.py --server http://127.0.0.1:8080 --key job \\
        --identity py-1 --term 2 --renew 0.5 --retry 0.5 [--token T]
    {"event": "elected", "identity": "py-1", "fencing_token": 4, "time": 1764660000.123}
    {"event": "ousting", "identity": "py-1", "fencing_token": 4, "time": 1764660003.456}
    {"event": "error", "identity": "py-1", "message": "TransportError: ...", "time": 1764660004.5}

The command line and the lines are the same for every language's adapter
(Go: ``client/go/cmd/elect``; TypeScript: ``client/typescript/dist/elect.js``),
so one suite, ``tests/conformance/``, runs them all. Each line is written and
flushed as it happens (``time`` is the wall clock, ``time.time()``).

Exit status: SIGTERM or SIGINT stops the election (steps down, releases the
lease) and exits 0; a permanent error (invalid_request, unauthorized,
forbidden) ends it after its one error line, status 1; bad flags, status 2.
``elector_proc.py`` in ``tests/support`` is the richer harness of the Python
suite (monotonic times, pause detection); this one prints only what every
language can print, which is why it is a separate script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from leaderelection import Config, LeaderElector, LeaseClient
from leaderelection.errors import PERMANENT


class Output:
    """One JSON object per line on stdout, each whole and flushed before the next.

    When stdout is gone (the reader exited), nobody can learn what happens
    any more: nothing more is written, and ``on_gone`` stops the election.
    """

    def __init__(self, on_gone: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._gone = threading.Event()
        self._on_gone = on_gone

    def emit(self, **fields: Any) -> None:
        fields["time"] = time.time()
        line = json.dumps(fields)
        with self._lock:
            if self._gone.is_set():
                return
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except OSError:  # BrokenPipeError: the reader is gone
                self._gone.set()
                self._on_gone()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="elect", description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="the service's URL, http://host:port")
    parser.add_argument("--key", required=True, help="the election's key")
    parser.add_argument("--identity", default=None, help="holder name (default hostname-pid-…)")
    parser.add_argument("--term", type=float, default=15.0, help="seconds: the ttl asked for")
    parser.add_argument("--renew", type=float, default=5.0, help="seconds between renewals")
    parser.add_argument("--retry", type=float, default=2.0, help="seconds between attempts")
    parser.add_argument("--token", default=os.environ.get("LEADERELECTION_TOKEN") or None)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    # First thing: a SIGTERM while starting up still means "stop, exit 0".
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    args = parse(argv)  # exits 2 on bad flags
    try:
        config = Config(term=args.term, renew=args.renew, retry=args.retry)
    except ValueError as exc:
        print(f"elect: {exc}", file=sys.stderr)
        return 2
    out = Output(on_gone=stop.set)
    refused: list[BaseException] = []
    client = LeaseClient(args.server, token=args.token)
    elector = LeaderElector(client, args.key, identity=args.identity, config=config)

    def token() -> int | None:
        term = elector.leadership  # the term that just began or ended
        return None if term is None else term.lease.fencing_token

    elector.on_elected = lambda me, _cancel: out.emit(
        event="elected", identity=me, fencing_token=token()
    )
    elector.on_ousting = lambda me, _cancel: out.emit(
        event="ousting", identity=me, fencing_token=token()
    )

    def on_error(me: str, error: Exception, _cancel: object) -> None:
        out.emit(event="error", identity=me, message=f"{type(error).__name__}: {error}")
        if isinstance(error, PERMANENT):
            refused.append(error)  # the elector has ended the election itself (row C12)
            stop.set()

    elector.on_error = on_error
    with client:
        elector.start()
        # The main thread only waits: signal handlers run here, between waits.
        while not stop.wait(0.5):
            pass
        elector.stop()
    if refused:
        print(f"elect: the election ended: {refused[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
