"""How an election ends: permanent errors and a clean shutdown, for both electors.

A permanent error (``errors.PERMANENT``: 422, 401, 403) is answered by a real
service: a ttl past its limit, a read-only token. The one answer a real
service cannot be made to give on demand, a 403 to a renewal after a
successful acquire, comes from ``support.faultproxy`` in front of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leaderelection import Config, Forbidden, InvalidRequest, LeaseClient
from support.electors import Electors
from support.faultproxy import FaultProxy
from support.procs import ServiceProcess, wait_until
from support.tokens import TokenSet

FAST = Config(term=2.0, renew=0.4, retry=0.3)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, TokenSet]]:
    """A service with auth on: a writer token and a read-only one."""
    tmp = tmp_path_factory.mktemp("ends")
    tokens = TokenSet.write(tmp / "tokens.json", writer=("write", ""), ro=("read", ""))
    with ServiceProcess(
        (tmp / "data").as_uri(),
        log_path=tmp / "service.log",
        extra_args=("--auth-file", str(tokens.path)),
    ) as svc:
        yield svc, tokens


class Ends:
    """Records callbacks; ``done`` is set when on_error has been called."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.errors: list[Exception] = []
        self.lock = threading.Lock()

    def hooks(self) -> dict[str, Callable[..., None]]:
        def note(what: str) -> Callable[..., None]:
            return lambda me, cancel: self._add(what)

        return {"on_elected": note("elected"), "on_ousting": note("ousting"),
                "on_error": lambda me, err, cancel: self._err(err)}  # fmt: skip

    def _add(self, what: str) -> None:
        with self.lock:
            self.events.append(what)

    def _err(self, err: Exception) -> None:
        with self.lock:
            self.errors.append(err)
            self.events.append(f"error {type(err).__name__}")


def test_invalid_request_on_acquire_ends_the_election(
    electors: Electors, secured: tuple[ServiceProcess, TokenSet]
) -> None:
    svc, tokens = secured
    ends = Ends()
    client = electors.client(svc.url, token=tokens.tokens["writer"])
    # Every local rule holds, but the service allows at most 3600 s: 422.
    config = Config(term=4000, renew=1000, retry=0.2)
    elector = electors.new(client, f"ends-422-{electors.kind}", config=config, **ends.hooks())
    elector.start()
    try:
        # The election ends by itself: wait_for_leadership returns False, not on timeout.
        assert not elector.wait_for_leadership(30)
        assert len(ends.errors) == 1 and isinstance(ends.errors[0], InvalidRequest)
    finally:
        elector.stop()
    assert ends.events == ["error InvalidRequest"]  # once: never retried


def test_forbidden_on_acquire_ends_the_election(
    electors: Electors, secured: tuple[ServiceProcess, TokenSet]
) -> None:
    svc, tokens = secured
    ends = Ends()
    client = electors.client(svc.url, token=tokens.tokens["ro"])
    elector = electors.new(client, f"ends-403-{electors.kind}", config=FAST, **ends.hooks())
    elector.start()
    try:
        assert not elector.wait_for_leadership(30)
    finally:
        elector.stop()
    assert ends.events == ["error Forbidden"]


def test_forbidden_on_renew_steps_down_reports_once_and_releases(
    electors: Electors, secured: tuple[ServiceProcess, TokenSet]
) -> None:
    svc, tokens = secured
    key = f"ends-renew-{electors.kind}"
    ends = Ends()
    with (
        FaultProxy(svc.url) as proxy,
        LeaseClient(svc.url, token=tokens.tokens["writer"]) as admin,
    ):
        client = electors.client(proxy.url, token=tokens.tokens["writer"])
        elector = electors.new(client, key, config=FAST, watch=False, **ends.hooks())
        elector.start()
        try:
            assert elector.wait_for_leadership(20)
            proxy.fail_next("POST", status=403)  # the next renewal is refused
            wait_until(lambda: not elector.is_leader, 20, what="stepping down")
            assert not elector.wait_for_leadership(20)  # the election has ended
            term = elector.leadership
            assert term is not None and term.ended_by == "stopped"
            # as after cancel(): the lease is released (the release is forwarded)
            wait_until(lambda: not admin.get(key).held, 20, what="the lease released")
        finally:
            elector.stop()
    assert ends.events == ["elected", "ousting", "error Forbidden"]
    assert isinstance(ends.errors[0], Forbidden)


def test_shutdown_logs_no_traceback(
    electors: Electors, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping while the follower's watch stream is mid-read logs nothing above INFO.

    The race (the stream closed between two reads, httpx.StreamClosed) hit
    about one shutdown in five; 25 shutdowns catch it with odds of about 1 in 260.
    """
    caplog.set_level(logging.DEBUG, logger="leaderelection")
    config = Config(term=10, renew=3, retry=1)  # timeouts long enough for a busy machine
    with ServiceProcess((tmp_path / "data").as_uri(), log_path=tmp_path / "svc.log") as svc:
        client = electors.client(svc.url)
        for i in range(25):
            with electors.new(client, "shutdown", identity=f"e{i}", config=config) as elector:
                assert elector.wait_for_leadership(20)
    noisy = [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info is not None]
    assert noisy == [], [(r.getMessage(), r.exc_info) for r in noisy]
    assert sum("elected" in r.getMessage() for r in caplog.records) == 25
