"""The chaos run's fault injectors: threads drawing fault kinds from one deck,
each fault taking what it acts on for itself.

Example::

    faults = Faults(stage, roster, backend="postgres", kinds=KINDS, rng=random.Random(7),
                    term=3.0, pause_between=(0.5, 3.0))
    faults.inject(threads=3, deadline=begin + 600, cap=begin + 1800, t0=t0)
    faults.done, faults.unhealthy, faults.problems   # for the checker

Each injector thread waits a random pause between its faults and draws from
the deck: each kind once in a random order before any repeats, and injecting
goes on past ``deadline`` (up to ``cap``) until every kind has been injected
once. A fault takes its target (an elector, a replica, the backend) for
itself, so two faults overlap in time but never fight over one target; a kind
whose target is taken goes back to the bottom of the deck. The kinds:

- ``kill_leader``: SIGKILL the elector process leading most keys; a new one replaces it;
- ``stop_leader``: SIGTERM it (it steps down and releases: a graceful handoff); a new one
  replaces it;
- ``pause_leader``: SIGSTOP it for longer than the term, then SIGCONT;
- ``cut_connection``: its proxy resets every connection for a while;
- ``blackhole``: its proxy holds every connection open and forwards nothing, so its
  calls hang until their timeouts, then delivers what waited (late) on restore;
- ``restart_service``: SIGKILL a service replica and start it again;
- ``pause_service``: SIGSTOP a service replica for longer than the term, then SIGCONT:
  what it answers after must agree with the backend (a stale grant would show as an
  overlap or a repeated token);
- ``backend_blackhole``: a replica's proxy to the backend holds (PostgreSQL, MariaDB, GCS);
- ``restart_backend``: PostgreSQL ``immediate`` restart; MariaDB SIGKILL and start;
  emulator stop/start (SQLite and the file backend have no server: left out);
- ``full_disk``: fill the file backend's tmpfs until ENOSPC, probe that ``/readyz``
  and a write to a new key answer 503, free it, probe that they recover.

Each fault records when it left which electors without a path to a working
backend (``Candidate.down``, or ``unhealthy`` for everyone), so the checker
holds gaps to the bound only after those windows end.

Rejected: one injector at a time (faults in production do not queue), and
drawing kinds independently at random (a short run could miss a kind).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx

from support.chaos_check import Fault
from support.chaos_electors import Candidate, Roster
from support.chaos_stage import Stage
from support.procs import wait_until

KINDS = (
    "kill_leader", "stop_leader", "pause_leader", "cut_connection", "blackhole",
    "restart_service", "pause_service", "backend_blackhole", "restart_backend", "full_disk",
)  # fmt: skip
ELECTOR_FAULTS = {"kill_leader", "stop_leader", "pause_leader", "cut_connection", "blackhole"}


class Faults:
    def __init__(
        self,
        stage: Stage,
        roster: Roster,
        *,
        backend: str,
        kinds: tuple[str, ...],
        rng: random.Random,
        term: float,
        pause_between: tuple[float, float],
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.stage = stage
        self.roster = roster
        self.backend = backend
        self.kinds = kinds
        self.rng = rng
        self.term = term
        self.pause_between = pause_between
        self.log = log
        self.done: list[Fault] = []
        self.unhealthy: list[tuple[float, float]] = []
        self.problems: list[str] = []
        self.halt = threading.Event()  # the run is ending early (an interrupt, an error)
        self.t0 = time.monotonic()  # the run's start, for the log's times
        self._lock = roster.lock  # one lock: a candidate taken is one still standing
        self._busy: set[str] = set()
        self._deck: list[str] = []

    def inject(self, threads: int, deadline: float, cap: float, *, t0: float) -> None:
        """``threads`` injectors at once, until they are done; times logged from ``t0``."""
        self.t0 = t0
        running = [
            threading.Thread(
                target=self._injector, args=(random.Random(self.rng.random()), deadline, cap)
            )
            for _ in range(threads)
        ]
        for t in running:
            t.start()
        for t in running:
            t.join()

    # -- targets -------------------------------------------------------------------

    def _take_candidate(self) -> Candidate | None:
        """A free candidate, most often the one leading most keys; taken until released."""
        with self._lock:
            free = [c for c in self.roster.candidates if c.elector.identity not in self._busy]
            if not free:
                return None
            if self.rng.random() < 0.8:
                c = max(free, key=lambda c: len(c.elector.leading_keys))
            else:
                c = self.rng.choice(free)
            self._busy.add(c.elector.identity)
            return c

    def _take(self, name: str) -> bool:
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)
            return True

    def _release(self, name: str) -> None:
        with self._lock:
            self._busy.discard(name)

    # -- the faults ----------------------------------------------------------------

    def _record(self, kind: str, target: str, start: float) -> None:
        end = time.monotonic()
        with self._lock:
            self.done.append(Fault(kind, target, start, end))
        self.log(f"{end - self.t0:7.2f}s {kind} {target} ({end - start:.2f} s)")

    def _longer_than_a_term(self) -> float:
        return self.term + self.rng.uniform(0.5, 2.0)

    def _elector_fault(self, kind: str) -> bool:
        c = self._take_candidate()
        if c is None:
            return False
        t = time.monotonic()
        try:
            if kind in ("kill_leader", "stop_leader"):
                c.gone = t
                if kind == "kill_leader":
                    c.elector.kill()
                else:
                    self.roster.stop(c)  # steps down and releases every key
                c.proxy.close()
                self.roster.retire(c)
                self.roster.spawn()
            elif kind == "pause_leader":
                c.elector.pause()
                time.sleep(self._longer_than_a_term())  # the fault's length
                c.elector.resume()
                c.down.append((t, time.monotonic()))
            else:
                c.proxy.cut() if kind == "cut_connection" else c.proxy.hold()
                time.sleep(self.rng.uniform(0.3, self.term + 2.0))
                c.proxy.restore()
                c.down.append((t, time.monotonic()))
        finally:
            self._release(c.elector.identity)
        self._record(kind, c.elector.identity, t)
        return True

    def _replica_fault(self, kind: str) -> bool:
        order = list(range(len(self.stage.replicas)))
        self.rng.shuffle(order)
        i = next((i for i in order if self._take(f"replica {i}")), None)
        if i is None:
            return False
        t = time.monotonic()
        everyone = False  # whether the fault can stall the other replicas too
        try:
            replica = self.stage.replicas[i]
            if kind == "restart_service":
                replica.kill()
                replica.start()
                everyone = len(self.stage.replicas) == 1
            elif kind == "pause_service":
                replica.pause()
                time.sleep(self._longer_than_a_term())
                replica.resume()
                # a replica stopped mid-write keeps its flock (file), its row locks
                # (SQL) or the SQLite write lock: the other replicas wait on it
                everyone = self.backend != "gcs"
            else:  # backend_blackhole
                proxy = self.stage.backend_proxies[i]
                proxy.hold()
                time.sleep(self._longer_than_a_term())
                proxy.restore()
                everyone = self.backend != "gcs"  # its open transaction holds row locks
        finally:
            self._release(f"replica {i}")
        window = (t, time.monotonic())
        if everyone:
            self.unhealthy.append(window)
        for c in list(self.roster.candidates):
            if c.replica == i:
                c.down.append(window)
        self._record(kind, f"replica {i}", t)
        return True

    def _backend_fault(self, kind: str) -> bool:
        # the disk's probes ask replica 0: it must not be restarted or paused meanwhile
        also = "replica 0" if kind == "full_disk" else None
        if not self._take("backend"):
            return False
        if also and not self._take(also):
            self._release("backend")
            return False
        t = time.monotonic()
        try:
            if kind == "restart_backend":
                assert self.stage.restart_backend is not None
                self.stage.restart_backend()
            else:
                self._full_disk()
        finally:
            self._release("backend")
            if also:
                self._release(also)
        self.unhealthy.append((t, time.monotonic()))
        self._record(kind, self.backend, t)
        return True

    def _full_disk(self) -> None:
        """Fill the disk, probe that writes are refused, free it, probe recovery."""
        from support.tmpfs import fill, free

        assert self.stage.disk is not None
        url = self.stage.replicas[0].url
        probe = f"probe-{self.rng.randrange(1 << 30)}"
        fill(self.stage.disk)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                self._expect(http, 503, "/readyz on a full disk")
                resp = http.post(f"/v1/leases/{probe}/acquire", json={"holder": "p", "ttl": 2})
                if resp.status_code != 503:
                    self.problems.append(
                        f"full disk: acquire of a new key answered {resp.status_code}, not 503"
                    )
                time.sleep(self.rng.uniform(0.5, self.term))  # the fault's length
        finally:
            free(self.stage.disk)
        with httpx.Client(base_url=url, timeout=10) as http:
            self._expect(http, 200, "/readyz after space returned")
            resp = http.post(f"/v1/leases/{probe}/acquire", json={"holder": "p", "ttl": 2})
            if resp.status_code != 200:
                self.problems.append(f"full disk freed: acquire answered {resp.status_code}")

    def _expect(self, http: httpx.Client, status: int, what: str) -> None:
        def answers() -> bool:
            try:
                return http.get("/readyz").status_code == status
            except httpx.TransportError:
                return False

        try:
            wait_until(answers, 10, 0.1, what)
        except TimeoutError as exc:
            self.problems.append(str(exc))

    # -- the deck and the injectors ------------------------------------------------

    def _inject(self, kind: str) -> bool:
        if kind in ELECTOR_FAULTS:
            return self._elector_fault(kind)
        if kind in ("restart_service", "pause_service", "backend_blackhole"):
            return self._replica_fault(kind)
        return self._backend_fault(kind)

    def _draw(self) -> str:
        with self._lock:
            if not self._deck:  # every kind once, in a random order, then again
                self._deck = list(self.kinds)
                self.rng.shuffle(self._deck)
            return self._deck.pop()

    def _put_back(self, kind: str) -> None:
        with self._lock:
            self._deck.insert(0, kind)  # its target is taken by another fault: later

    def _missing(self) -> set[str]:
        with self._lock:
            return set(self.kinds) - {f.kind for f in self.done}

    def _injector(self, rng: random.Random, deadline: float, cap: float) -> None:
        """Until ``deadline``, and on to ``cap`` while some kind was never injected."""
        while True:
            pause = rng.uniform(*self.pause_between)
            now = time.monotonic()
            if now + pause >= cap or (now + pause >= deadline and not self._missing()):
                return
            if self.halt.wait(pause):  # the faults' rhythm, not a synchronisation
                return
            kind = self._draw()
            try:
                if not self._inject(kind):
                    self._put_back(kind)
            except Exception as exc:  # the harness's own failure: said, never silent
                self.problems.append(f"harness: {kind} failed: {exc!r}")
                self.log(f"{kind} failed: {exc!r}")
