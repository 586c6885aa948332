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
   or an error, wait ``retry`` (jittered shorter) in ``_wait_before_retry``.
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

Callbacks get the identity and ``cancel`` (ends the election without waiting).
``on_ousting`` fires exactly once after every ``on_elected``, also on stop.
Callbacks run one at a time, holding the elector's transition lock: return
quickly, and do the leader's work elsewhere (``run_while_leader``). An
exception in a callback is logged and passed to ``on_error``; the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from leaderelection._base import KEY_RE
from leaderelection._election import Clock, Election, Leadership, default_identity
from leaderelection.client import LeaseClient
from leaderelection.config import Config
from leaderelection.errors import PERMANENT, LeaseError, LeaseHeld, LeaseLost, LeaseNotFound
from leaderelection.lease import Lease
from leaderelection.watch import Watch

log = logging.getLogger("leaderelection")

Cancel = Callable[[], None]
OnElected = Callable[[str, Cancel], object]
"""``on_elected(identity, cancel)`` and ``on_ousting(identity, cancel)``."""
OnError = Callable[[str, Exception, Cancel], object]
"""``on_error(identity, error, cancel)``."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise ValueError(f"key must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$, got {key!r}")
    return key


class LeaderElector:
    """Runs the election for ``key`` over ``client``; see the module docstring."""

    def __init__(
        self,
        client: LeaseClient,
        key: str,
        *,
        identity: str | None = None,
        config: Config | None = None,
        on_elected: OnElected | None = None,
        on_ousting: OnElected | None = None,
        on_error: OnError | None = None,
        clock: Clock = time.monotonic,
        watch: bool = True,
    ) -> None:
        self.client = client
        self.watch = watch
        self.key = check_key(key)
        self.identity = identity or default_identity()
        self.config = config or Config()
        self.on_elected = on_elected
        self.on_ousting = on_ousting
        self.on_error = on_error
        self._clock = clock
        self._election = Election(self.config, clock)
        self._transition = threading.RLock()  # one term change (and its callback) at a time
        self._cond = threading.Condition()  # notified after every change
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lost = threading.Event()  # set when the current term ends
        self._lost.set()
        self._threads: list[threading.Thread] = []
        self._done = False
        self._refusal: LeaseError | None = None  # the permanent error that ended the election
        self._stream: Watch | None = None  # the follower's open watch stream
        self._stream_lock = threading.Lock()

    # -- what callers read ------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True only while a term is open and the clock is before its deadline."""
        return self._election.is_leader()

    @property
    def lease(self) -> Lease | None:
        """The current term's lease (``fencing_token``), or None when not leading."""
        term = self._election.leadership
        return term.lease if term is not None and self.is_leader else None

    @property
    def leadership(self) -> Leadership | None:
        """The current or last term (monotonic start, deadline or end), None before any."""
        return self._election.leadership

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Block until this elector leads (True), or the election ends or ``timeout`` passes."""
        end = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self.is_leader:
                if self._done or self._stopping.is_set():
                    return False
                remaining = None if end is None else end - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start campaigning in background threads; returns at once."""
        if self._threads:
            raise RuntimeError("this elector was already started")
        self._threads = [
            threading.Thread(target=self._run, name=f"leaderelection-{self.key}", daemon=True),
            threading.Thread(
                target=self._watch, name=f"leaderelection-{self.key}-deadline", daemon=True
            ),
        ]
        if self.watch:
            self._threads.append(
                threading.Thread(
                    target=self._follow, name=f"leaderelection-{self.key}-follow", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def cancel(self) -> None:
        """End the election without waiting (safe from callbacks); the loop releases."""
        self._stopping.set()
        self._wake.set()
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
        self._end_term("stopped")
        for thread in self._threads:
            thread.join(timeout)

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

    # -- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._end_term("deadline")  # a pause or a hung call may have run past it
                if not self._election.active:
                    self._acquire_step()
                    continue
                wait = self._election.renew_wait()
                if wait > 0:
                    self._stopping.wait(wait)
                    continue
                self._renew_step()
        finally:
            self._shutdown()

    def _acquire_step(self) -> None:
        error: LeaseError | None = None
        sent = self._clock()
        try:
            lease = self.client.acquire(
                self.key, self.identity, self.config.term, timeout=self.config.timeout
            )
        except LeaseHeld:
            pass
        except PERMANENT as exc:
            self._refused(exc)
            return
        except LeaseError as exc:
            error = exc
            self._report(exc)
        except Exception as exc:  # a bug must not end the loop: report, retry
            log.exception("leaderelection %s: acquire failed", self.key)
            self._report(exc)
        else:
            self._begin(lease, sent)
            if self._election.active:
                return
        self._wait_before_retry(self._election.follower_wait(error))

    def _renew_step(self) -> None:
        term = self._election.leadership
        assert term is not None
        sent = self._clock()
        try:
            lease = self.client.renew(
                self.key,
                self.identity,
                term.lease.fencing_token,
                self.config.term,
                timeout=self._election.attempt_timeout(),
            )
        except (LeaseLost, LeaseNotFound) as exc:
            log.info("leaderelection %s: %s lost the lease: %s", self.key, self.identity, exc)
            self._end_term("lost")
        except PERMANENT as exc:
            self._refused(exc)
        except Exception as exc:
            self._end_term("deadline")  # say "not leader" before anything else
            with self._transition:
                self._election.renew_failed()
            if not isinstance(exc, LeaseError):
                log.exception("leaderelection %s: renew failed", self.key)
            self._report(exc)
        else:
            self._begin(lease, sent)

    def _wait_before_retry(self, timeout: float) -> None:
        """The one place a follower waits between acquire attempts.

        Returns early when ``_wake`` is set: by ``cancel()``, and (the seam for
        the watch stream) by whoever learns that the lease was released or expired.
        """
        self._wake.wait(timeout)
        self._wake.clear()

    def _follow(self) -> None:
        """Wake the follower when the watch stream says the lease is free."""
        last_id: str | None = None
        while not self._stopping.is_set():
            try:
                stream = self.client.watch(self.key, last_event_id=last_id)
                with self._stream_lock:
                    if self._stopping.is_set():
                        return
                    self._stream = stream
                for event in stream:
                    last_id = event.id
                    if event.free:
                        self._wake.set()
            except LeaseError as exc:
                log.debug("leaderelection %s: watch stream: %s", self.key, exc)
            except Exception:
                log.exception("leaderelection %s: watch stream failed", self.key)
            finally:
                self._close_stream()
            self._stopping.wait(self.config.retry)  # meanwhile the follower polls every retry

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _shutdown(self) -> None:
        try:
            self._end_term("stopped")
            lease = self._election.last_lease
            if lease is not None:
                try:
                    self.client.release(
                        self.key, self.identity, lease.fencing_token, timeout=self.config.timeout
                    )
                except (LeaseLost, LeaseNotFound):
                    pass  # another term already has it: nothing of ours to release
                except Exception as exc:
                    if self._refusal is None:
                        self._report(exc)
                    else:  # on_error already had the reason the election ended
                        log.warning("leaderelection %s: release failed: %s", self.key, exc)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _watch(self) -> None:
        while True:
            with self._cond:
                if self._done:
                    return
                term = self._election.leadership
                if term is None or not term.active:
                    self._cond.wait()
                    continue
                wait = term.until - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
            self._end_term("deadline")

    # -- term changes and callbacks ------------------------------------------------

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _begin(self, lease: Lease, sent_at: float) -> None:
        with self._transition:
            # An answer may arrive after the deadline passed (a pause, a slow
            # answer): that term is over, whatever this answer says.
            self._end_term("deadline")
            began = self._election.granted(lease, sent_at, may_lead=not self._stopping.is_set())
            if began:
                self._lost = threading.Event()
            self._notify()
            if began:
                log.info(
                    "leaderelection %s: %s elected (token %d)",
                    self.key,
                    self.identity,
                    lease.fencing_token,
                )
                if self.on_elected is not None:
                    self._call(self.on_elected)

    def _end_term(self, ended_by: str) -> None:
        with self._transition:
            if ended_by == "deadline":
                ended = self._election.expire()
            else:
                ended = self._election.step_down(ended_by)
            if ended is None:
                return
            self._lost.set()
            self._notify()
            log.info(
                "leaderelection %s: %s ousting (%s, token %d)",
                self.key,
                self.identity,
                ended_by,
                ended.lease.fencing_token,
            )
            if self.on_ousting is not None:
                self._call(self.on_ousting)

    def _call(self, callback: OnElected) -> None:
        try:
            callback(self.identity, self.cancel)
        except Exception as exc:
            log.exception("leaderelection %s: callback %r raised", self.key, callback)
            self._report(exc)

    def _refused(self, error: LeaseError) -> None:
        """A permanent error (``errors.PERMANENT``): report it once, end the election."""
        log.info(
            "leaderelection %s: %s refused, ending the election: %s", self.key, self.identity, error
        )
        self._refusal = error
        self._end_term("stopped")  # before on_error, as after cancel(): not leader first
        self.cancel()
        self._report(error)

    def _report(self, error: Exception) -> None:
        callback = self.on_error
        if callback is None:
            log.warning("leaderelection %s: %s", self.key, error)
            return
        try:
            callback(self.identity, error, self.cancel)
        except Exception:
            log.exception("leaderelection %s: on_error raised", self.key)
