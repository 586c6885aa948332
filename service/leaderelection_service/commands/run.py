"""``leaderelection run``: run a command only while this process leads a key.

Example::

    leaderelection run --key nightly-report --ttl 15 -- ./report.sh --all
    leaderelection run --key shard-7 --server http://leases:8080 --token "$T" -- python worker.py
    leaderelection run --key api-primary --value 10.0.0.7:8443 -- ./serve.sh   # published

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

Exit status 2: bad arguments or timing (a ``Config`` rule broken), or the
service refused the request for good (401, 403 or 422, the client's
``errors.PERMANENT``: retrying would not help, so the elector ended the
election). Every other error (transport, 500, 503, ``lease_lost``) is
reported and retried.
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
from collections.abc import Callable
from dataclasses import dataclass

from leaderelection import Config, LeaderElector, LeaseClient
from leaderelection.errors import PERMANENT
from leaderelection_service.commands import connection

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
    started by a thread that lives as long as the process.
    """

    def __init__(
        self, args: argparse.Namespace, cmd: list[str], config: Config, grace: float
    ) -> None:
        self.args = args
        self.cmd = cmd
        self.grace = grace
        self.events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.client = LeaseClient(
            connection.server(args), token=connection.token(args), timeout=config.timeout
        )
        self.elector = LeaderElector(
            self.client,
            args.key,
            identity=args.holder,
            config=config,
            value=args.value,
            on_elected=lambda me, cancel: self.events.put(("elected", None)),
            on_ousting=lambda me, cancel: self.events.put(("ousted", None)),
            on_error=lambda me, err, cancel: self.on_error(err),
        )
        self.child: Child | None = None
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
        threading.Thread(target=self._wait, args=(self.child,), daemon=True).start()

    def _wait(self, child: Child) -> None:
        child.proc.wait()
        self.events.put(("exited", child))

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda n, frame: self.events.put(("signal", n)))
        self.elector.start()
        self.say(f"campaigning for {self.args.key} as {self.elector.identity}")
        try:
            return self._loop()
        finally:
            self.elector.stop()  # releases the lease if this process still holds it
            self.client.close()

    def _loop(self) -> int:
        while True:
            event, value = self.events.get()
            if event == "elected":
                if self.child is None:
                    self.start_child()
            elif event == "ousted":
                if self.child is not None:
                    self.say(f"leadership of {self.args.key} ended; stopping the command")
                    self.child.stop(self.grace)
                    self.child = None
            elif event == "exited":
                if value is None:
                    return 127  # CMD could not be started
                if value is self.child and not self.child.stopping:
                    status = self.child.stop(0)  # reaped; kills what it left behind
                    self.say(f"command exited with status {status}; releasing")
                    return status
            elif event == "refused":
                self.say(f"the service refused the request for good: {value}")
                if self.child is not None:
                    self.child.stop(self.grace)
                return 2
            elif event == "signal":
                assert isinstance(value, int)
                if self.child is None:
                    return 128 + value
                self.say(f"got signal {value}; stopping the command and releasing")
                return self.child.stop(self.grace)


def main(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("leaderelection run: no command given (… -- CMD ARGS)", file=sys.stderr)
        return 2
    grace = args.ttl / 5 if args.grace is None else args.grace
    try:
        config = config_for(args.ttl, args.retry, grace)
        runner = Runner(args, cmd, config, grace)
    except ValueError as exc:
        print(f"leaderelection run: {exc}", file=sys.stderr)
        return 2
    return runner.run()
