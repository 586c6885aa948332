"""``leaderelection run``: run a command only while this process leads a key.

Example::

    leaderelection run --key nightly-report --ttl 15 -- ./report.sh --all
    leaderelection run --key shard-7 --server http://leases:8080 --token "$T" -- python worker.py
    leaderelection run --key api-primary --value 10.0.0.7:8443 -- ./serve.sh   # published
    leaderelection run --key heavy-job --limit 3 -- ./crunch.sh   # at most 3 run at once

Any number of copies may run on any hosts; the one that leads ``--key`` runs
the command, the others wait. What happens when:

1. **elected**: CMD starts, in its own process group, with
   ``LEADERELECTION_KEY``, ``LEADERELECTION_HOLDER`` and
   ``LEADERELECTION_FENCING_TOKEN`` in its environment (pass the token along
   with whatever CMD writes).
2. **leadership ends** (a renewal refused, or none succeeded in time): CMD's
   group gets SIGTERM, then SIGKILL after ``--grace`` seconds, and this process
   campaigns again (CMD starts anew when it is elected again). The elector steps
   down ``grace + ttl/10`` seconds before the lease could expire on the service,
   so CMD is gone before any other copy can be elected.
3. **CMD exits**: anything it left in its process group is killed, the lease
   is released, and ``run`` exits with CMD's exit status (128 + N if signal N
   killed it).
4. **SIGINT or SIGTERM to run**: CMD is stopped as in 2, the lease is released,
   and ``run`` exits with CMD's status (128 + the signal if CMD was not running).
5. **run itself dies, even by SIGKILL**: on Linux, CMD gets SIGKILL from the
   kernel (``PR_SET_PDEATHSIG``), so it never outlives ``run`` as a leader no
   one supervises; the lease lapses after its ttl and another copy takes over.
   CMD's own children are not covered by this signal: a CMD that starts
   children should end them when it gets SIGTERM. Elsewhere than Linux there
   is no parent-death signal: CMD keeps running if ``run`` is SIGKILLed.

For cron, where every host fires the same line and the job must run once::

    leaderelection run --key nightly --ttl 15 --no-wait --hold-after 2m -- ./nightly.sh

6. ``--no-wait``: when an acquire finds another holder (the service answered
   ``lease_held``), exit at once with status 75 without running CMD (also
   after a lost term, instead of waiting to run it again). Until the service
   answers at all, ``run`` keeps trying: bound that with ``--timeout``.
7. ``--timeout DURATION``: if CMD has not started that long after ``run``
   started, exit with status 124 (as timeout(1) does). Once CMD has started
   it no longer applies.
8. ``--hold-after DURATION``: when CMD exits, keep the lease (renewing) that
   much longer before releasing it, so a host whose cron fires late still
   finds it held; then exit with CMD's status. A signal or a lost term ends
   the hold early.

Exit statuses of ``run`` itself, apart from CMD's own: 2, bad arguments or
timing (a ``Config`` rule broken), or the service refused the request for good
(401, 403 or 422, the client's ``errors.PERMANENT``: retrying would not help,
so the elector ended the election); 75 (``EX_TEMPFAIL``), ``--no-wait`` found
the lease held; 124, ``--timeout`` passed; 127, CMD could not be started;
128 + N, signal N stopped ``run`` before CMD started. Every other error
(transport, 500, 503, ``lease_lost``) is reported and retried. 75 and 124 were
chosen as the statuses least likely to be a job's own that a shell user
already reads as "try later" and "timed out"; ``flock -n`` (status 1) was
rejected as the model because 1 is every failing job's status.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leaderelection import Config, LeaderElector, Lease, LeaseClient, LeaseHeld
from leaderelection.errors import PERMANENT
from leaderelection_service.commands import connection
from leaderelection_service.commands.durations import duration

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
HELD = 75
"""``--no-wait`` and another holder has the lease (sysexits.h ``EX_TEMPFAIL``)."""
TIMED_OUT = 124
"""``--timeout`` passed before CMD started (as timeout(1))."""
USAGE = 2
NOT_STARTED = 127


def add_arguments(parser: argparse.ArgumentParser) -> None:
    connection.add_arguments(parser)
    parser.add_argument("--key", required=True, help="the election's name")
    parser.add_argument(
        "--ttl", type=float, default=15.0, help="seconds a grant lasts without renewal (15)"
    )
    parser.add_argument(
        "--retry", type=float, default=2.0, help="seconds between attempts while waiting (2)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds between SIGTERM and SIGKILL when CMD must stop (default ttl/5)",
    )
    parser.add_argument("--holder", help="this candidate's name (default hostname-pid-random)")
    parser.add_argument(
        "--value",
        help="what the leader publishes as the lease's value (an address, a version; "
        "at most 4096 bytes of UTF-8)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=1,
        help="how many copies may run CMD at once (a semaphore, as `consul lock -n`; "
        "1-1000, default 1); every copy on the key must give the same limit",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help=f"if another holder has the lease, exit {HELD} at once without running CMD",
    )
    parser.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help=f"give up (exit {TIMED_OUT}) if CMD has not started after DURATION (90, 1.5s, 2m)",
    )
    parser.add_argument(
        "--hold-after",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="keep the lease this long after CMD exits, then release (for cron)",
    )
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS…")
    parser.set_defaults(func=main)


def config_for(ttl: float, retry: float, grace: float) -> Config:
    """Renew every ttl/4; step down ``grace`` (plus the usual ttl/10) before the lease lapses."""
    if grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace:g}")
    return Config(term=ttl, renew=ttl / 4, retry=retry, margin=grace + ttl / 10)


def exit_status(returncode: int) -> int:
    """A shell's view of a child's status: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to look up after
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class WatchedClient(LeaseClient):
    """The client, telling ``run`` each time an acquire finds another holder.

    ``--no-wait`` must know that the service answered ``lease_held``; the
    elector treats that answer as an ordinary wait and reports nothing.
    Rejected: one acquire of ``run``'s own before the elector starts (the
    elector would acquire again, and a campaign after a lost term would not
    be covered), and a hook in the elector's public API for one command.
    """

    def __init__(self, *args: Any, on_held: Callable[[LeaseHeld], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.on_held = on_held

    def acquire(self, *args: Any, **kw: Any) -> Lease:
        try:
            return super().acquire(*args, **kw)
        except LeaseHeld as exc:
            self.on_held(exc)
            raise


@dataclass
class Child:
    """CMD, running in its own process group."""

    proc: subprocess.Popen[bytes]
    stopping: bool = False

    def killpg(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL after ``grace``; CMD's exit status."""
        self.stopping = True
        self.killpg(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.killpg(signal.SIGKILL)
            self.proc.wait()
        self.killpg(signal.SIGKILL)  # whatever CMD left behind in its group
        return exit_status(self.proc.returncode)


class Runner:
    """The loop of ``run``: elector callbacks, CMD's exit and signals, in one thread.

    Every event goes through one ``SimpleQueue`` (safe to put into from a
    signal handler) to the main thread, which alone starts and stops CMD: the
    parent-death signal is tied to the thread that forked, so CMD must be
    started by a thread that lives as long as the process. The two deadlines
    (``--timeout``, the end of ``--hold-after``) are the queue's own timeout,
    read on the injected ``clock``.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        cmd: list[str],
        config: Config,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.args = args
        self.cmd = cmd
        self.grace = grace
        self.clock = clock
        self.events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.client = WatchedClient(
            connection.server(args),
            token=connection.token(args),
            timeout=config.timeout,
            on_held=lambda err: self.events.put(("held", err)),
        )
        self.elector = LeaderElector(
            self.client,
            args.key,
            identity=args.holder,
            config=config,
            value=args.value,
            limit=args.limit,
            on_elected=lambda me, cancel: self.events.put(("elected", None)),
            on_ousting=lambda me, cancel: self.events.put(("ousted", None)),
            on_error=lambda me, err, cancel: self.on_error(err),
        )
        self.child: Child | None = None
        self.started = False
        """CMD has been started once: ``--timeout`` no longer applies."""
        self.preexec = _parent_death_signal()

    def on_error(self, err: Exception) -> None:
        if isinstance(err, PERMANENT):  # the elector has ended the election
            self.events.put(("refused", err))
        else:
            self.say(f"{err.__class__.__name__}: {err} (retrying)")

    def say(self, text: str) -> None:
        print(f"leaderelection run: {text}", file=sys.stderr, flush=True)

    def start_child(self) -> None:
        lease = self.elector.lease
        if lease is None:  # the term ended before this event was handled
            return
        env = dict(os.environ)
        env.update(
            LEADERELECTION_KEY=self.args.key,
            LEADERELECTION_HOLDER=self.elector.identity,
            LEADERELECTION_FENCING_TOKEN=str(lease.fencing_token),
        )
        self.say(f"elected for {self.args.key} (fencing token {lease.fencing_token}); starting")
        try:
            proc = subprocess.Popen(self.cmd, env=env, process_group=0, preexec_fn=self.preexec)
        except OSError as exc:
            self.say(f"cannot start {self.cmd[0]}: {exc}")
            self.events.put(("exited", None))
            return
        self.child = Child(proc)
        self.started = True
        threading.Thread(target=self._wait, args=(self.child,), daemon=True).start()

    def _wait(self, child: Child) -> None:
        child.proc.wait()
        self.events.put(("exited", child))

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda n, frame: self.events.put(("signal", n)))
        began = self.clock()
        self.elector.start()
        self.say(f"campaigning for {self.args.key} as {self.elector.identity}")
        try:
            give_up = None if self.args.timeout is None else began + self.args.timeout
            status, hold = self._loop(give_up)
            return self._hold(status) if hold else status
        finally:
            self.elector.stop()  # releases the lease if this process still holds it
            self.client.close()

    def _next(self, until: float | None) -> tuple[str, object] | None:
        """The next event, or None when the clock reaches ``until`` first."""
        if until is None:
            return self.events.get()
        try:
            return self.events.get(timeout=max(0.0, until - self.clock()))
        except queue.Empty:
            return None

    def _loop(self, give_up: float | None) -> tuple[int, bool]:
        """Until CMD exits or ``run`` gives up: the exit status, and whether to hold first."""
        while True:
            got = self._next(None if self.started else give_up)
            if got is None:  # --timeout passed before CMD started
                self.say(f"not elected within --timeout {self.args.timeout:g} s; giving up")
                return TIMED_OUT, False
            event, value = got
            if event == "elected":
                if self.child is None:
                    self.start_child()
            elif event == "held":
                if self.args.no_wait and self.child is None:
                    assert isinstance(value, LeaseHeld)
                    holder = value.lease.holder if value.lease is not None else "another holder"
                    self.say(f"{self.args.key} is held by {holder}; --no-wait: not running")
                    return HELD, False
            elif event == "ousted":
                if self.child is not None:
                    self.say(f"leadership of {self.args.key} ended; stopping the command")
                    self.child.stop(self.grace)
                    self.child = None
            elif event == "exited":
                if value is None:
                    return NOT_STARTED, False  # CMD could not be started
                if value is self.child and not self.child.stopping:
                    status = self.child.stop(0)  # reaped; kills what it left behind
                    if self.args.hold_after > 0 and self.elector.is_leader:
                        return status, True
                    self.say(f"command exited with status {status}; releasing")
                    return status, False
            elif event == "refused":
                self.say(f"the service refused the request for good: {value}")
                if self.child is not None:
                    self.child.stop(self.grace)
                return USAGE, False
            elif event == "signal":
                assert isinstance(value, int)
                if self.child is None:
                    return 128 + value, False
                self.say(f"got signal {value}; stopping the command and releasing")
                return self.child.stop(self.grace), False

    def _hold(self, status: int) -> int:
        """``--hold-after``: keep leading (the elector renews) until it passes; CMD's status."""
        hold = self.args.hold_after
        self.say(f"command exited with status {status}; holding {self.args.key} for {hold:g} s")
        until = self.clock() + hold
        while (got := self._next(until)) is not None:
            event, value = got
            if event == "ousted":
                self.say(f"leadership of {self.args.key} ended while holding it")
                return status
            if event == "refused":
                self.say(f"the service refused the request for good: {value}")
                return status
            if event == "signal":
                self.say(f"got signal {value}; releasing")
                return status
        self.say(f"held {self.args.key} for {hold:g} s after the command; releasing")
        return status


def main(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("leaderelection run: no command given (… -- CMD ARGS)", file=sys.stderr)
        return USAGE
    grace = args.ttl / 5 if args.grace is None else args.grace
    try:
        config = config_for(args.ttl, args.retry, grace)
        runner = Runner(args, cmd, config, grace)
    except (ValueError, TypeError) as exc:
        print(f"leaderelection run: {exc}", file=sys.stderr)
        return USAGE
    return runner.run()
