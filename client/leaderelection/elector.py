"""``LeaderElector``: campaign for a key in a background thread, step down in time.

Example::

    client = LeaseClient("http://127.0.0.1:8080")
    elector = LeaderElector(client, "cron", config=Config(term=8, renew=4, retry=2))
    elector.on_elected = lambda me, cancel: print(me, "elected")
    elector.on_ousting = lambda me, cancel: print(me, "ousting")
    elector.on_error = lambda me, err, cancel: print(me, "error", err)
    elector.start()
    ...
    elector.stop()          # steps down, releases the lease, joins

The loop, in a daemon thread named ``leaderelection-<key>``:

1. While not leading, send ``acquire(key, identity, term)``; on ``lease_held``
   or an error, wait ``retry`` (jittered shorter; row C6 of docs/elector.md).
   With ``watch=True`` (the default) a third thread follows the key's watch
   stream and ends that wait as soon as the lease is released or expires, so
   a graceful handoff takes one round trip instead of up to ``retry``. If the
   stream breaks, the follower still tries every ``retry`` while the thread
   reconnects (after ``retry``, resuming from the last event).
2. On success a term begins: the deadline is the monotonic time the request
   was *sent* + term - margin, and ``on_elected`` fires.
3. While leading, send ``renew`` every ``renew`` seconds; each success moves
   the deadline on. Transient errors (transport, 503, 500) are retried with
   jitter inside the deadline and reported to ``on_error``; ``lease_lost`` (or
   ``not_found``) ends the term at once.
   A permanent error (422, 401, 403: ``errors.PERMANENT``) on acquire or renew
   ends the election: the term ends, ``on_error`` once, then as after ``cancel()``.
4. At the deadline the term ends, whether or not a renew is still hanging: a
   second thread watches the deadline, and ``is_leader`` compares it with the
   clock on every call, so even a process paused past it reads False first.
5. ``stop()`` (or ``cancel()`` from a callback) ends the term, releases the
   lease so a follower takes over within its ``retry``, and ends the threads.

The decisions of all three threads are made once, with no I/O, by the state
machine in ``leaderelection._machine`` (drawn as a table in docs/elector.md);
this class only performs its actions: requests, waits, callbacks. The
asyncio twin, ``AsyncLeaderElector``, drives the same machine.

Callbacks get the identity and ``cancel`` (ends the election without waiting).
``on_ousting`` fires exactly once after every ``on_elected``, also on stop.
Callbacks run one at a time, holding the elector's transition lock: return
quickly, and do the leader's work elsewhere (``run_while_leader``). An
exception in a callback is logged and passed to ``on_error``; the loop goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

from leaderelection._elector_base import (
    Cancel,
    ElectorBase,
    OnElected,
    OnError,
    check_successor,
)
from leaderelection._machine import (
    BLOCKING,
    Action,
    Call,
    Flow,
    NextEvent,
    OpenWatch,
    Result,
    Send,
    Wait,
    step,
)
from leaderelection.client import LeaseClient
from leaderelection.lease import Lease
from leaderelection.watch import LeaseEvent, Watch

__all__ = ["Cancel", "LeaderElector", "OnElected", "OnError"]


class LeaderElector(ElectorBase[LeaseClient, OnElected, OnError]):
    """Runs the election for ``key`` over ``client`` in threads; see the module docstring.

    Arguments: ``client``, ``key``, and keywords ``identity`` (default
    hostname-pid-random), ``config``, ``on_elected``, ``on_ousting``,
    ``on_error``, ``clock`` (monotonic seconds) and ``watch`` (follow the key's
    watch stream to take over at once; default True).
    """

    def _setup(self) -> None:
        # One condition for everything: its lock is held while the machine
        # decides and while a callback runs; waiting on it releases it.
        self._cond = threading.Condition(threading.RLock())
        self._threads: list[threading.Thread] = []
        self._lost = threading.Event()  # set when the current term ends
        self._lost.set()
        self._stream: Watch | None = None  # the follower's open watch stream
        self._events: Iterator[LeaseEvent] | None = None
        self._stream_lock = threading.Lock()

    # -- what callers wait for ----------------------------------------------------------

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Block until this elector leads (True), or the election ends or ``timeout`` passes."""
        until = None if timeout is None else self._clock() + timeout
        machine = self._machine
        self._wait(Wait(until, lambda: self.is_leader or machine.finished()))
        return self.is_leader

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start campaigning in background threads; returns at once."""
        if self._threads:
            raise RuntimeError("this elector was already started")
        flows = {"": self._machine.campaign(), "-deadline": self._machine.watchdog()}
        if self.watch:
            flows["-follow"] = self._machine.follow()
        self._threads = [
            threading.Thread(
                target=self._drive, args=(flow,), name=f"leaderelection-{self.key}{suffix}",
                daemon=True,
            )
            for suffix, flow in flows.items()
        ]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def cancel(self) -> None:
        """End the election without waiting (safe from callbacks); the loop releases."""
        self._machine.cancel()
        self._close_stream()
        self._notify()

    def stop(self, timeout: float | None = None) -> None:
        """End the election: step down now, release the lease, join the threads.

        Blocks for at most about one request timeout (the release) unless
        ``timeout`` says otherwise. From a callback it does not wait.
        """
        self.cancel()
        if threading.current_thread() in self._threads:
            return
        self._drive(self._machine.stop_now())
        for thread in self._threads:
            thread.join(timeout)

    def transfer(self, to: str, timeout: float | None = None) -> Lease | None:
        """End the election as ``stop()`` does, handing the lease to the candidate ``to``.

        Example (a rolling deploy: the old version hands over to the new one)::

            handed = old.transfer("web-v2-7f9c")   # on_ousting, then one transfer request
            handed.successor                       # "web-v2-7f9c"; only it may acquire now

        Steps down now (``on_ousting``), then sends ``transfer`` instead of
        ``release``: one write ends the term and names the successor, whose
        elector (following the watch stream) acquires at once; for one ttl no
        one else may. Returns the record the service answered, or None when
        nothing was handed on (not leading, or the term was already over).
        ``ValueError`` if ``to`` is empty or this elector's own identity.
        """
        to = check_successor(to, self.identity)
        if threading.current_thread() in self._threads:
            raise RuntimeError("transfer() from a callback would wait for itself; use cancel()")
        self._drive(self._machine.transfer_now(to))
        self.stop(timeout)
        return self._machine.handed

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_while_leader(self, fn: Callable[[threading.Event], object]) -> None:
        """Call ``fn(lost)`` in this thread each time this elector is elected.

        Example::

            def work(lost: threading.Event) -> None:
                while not lost.is_set():
                    do_one_step(fencing_token=elector.lease.fencing_token)

            elector.run_while_leader(work)     # returns when the election ends

        ``lost`` is set when the term ends; ``fn`` must return soon after (a
        thread cannot be interrupted). If ``fn`` returns early, the next call
        waits for the next term. Starts the elector if needed; an exception
        from ``fn`` propagates and the election goes on.
        """
        if not self._threads:
            self.start()
        while self.wait_for_leadership():
            lost = self._lost
            fn(lost)
            lost.wait()

    # -- the driver ---------------------------------------------------------------------

    def _drive(self, flow: Flow) -> None:
        """Perform ``flow``'s actions; the machine decides with the lock held."""
        result: Result = None
        with self._cond:
            while (action := step(flow, result)) is not None:
                self._cond.notify_all()  # the step may have changed what waiters wait for
                result = None
                if isinstance(action, Wait):
                    self._wait(action)
                elif isinstance(action, BLOCKING):
                    self._cond.release()  # no lock while the network has the floor
                    try:
                        result = self._io(action)
                    finally:
                        self._cond.acquire()
                else:
                    result = self._act(action)
            self._cond.notify_all()

    def _wait(self, action: Wait) -> None:
        with self._cond:
            while not action.done():
                left = None if action.until is None else action.until - self._clock()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)

    def _io(self, action: Action) -> Result:
        try:
            if isinstance(action, Send):
                answer: Result = self._request(action)()
                return answer
            if isinstance(action, OpenWatch):
                self._open_stream(action.last_event_id)
                return None
            if isinstance(action, NextEvent):
                events = self._events
                return None if events is None else next(events, None)
            self._close_stream()
        except Exception as exc:  # the machine decides what an error means
            return exc
        return None

    def _term_changed(self, began: bool) -> None:
        if began:  # run_while_leader waits on the term's own event
            self._lost = threading.Event()
        else:
            self._lost.set()

    def _act(self, action: Action) -> Result:
        if not isinstance(action, Call):
            self.cancel()
            return None
        callback = self._callback(action)
        if callback is None:
            return False
        try:
            callback()
        except Exception as exc:
            return exc
        return True

    def _open_stream(self, last_event_id: str | None) -> None:
        stream = self.client.watch(self.key, last_event_id=last_event_id)
        with self._stream_lock:
            if self._machine.stopping:
                return
            self._stream, self._events = stream, iter(stream)

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream, self._events = self._stream, None, None
        if stream is not None:
            stream.close()  # also from another thread: a blocked read returns

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()
