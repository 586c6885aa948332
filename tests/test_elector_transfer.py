"""``elector.transfer(to)`` and an operator's transfer, on both electors, against a real service.

A real ``leaderelection serve`` (uvicorn, file backend, API tokens). The
followers' retry is long (30 s), so a successor that leads within seconds was
woken by the watch stream, not by its polling.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leaderelection import Config, LeaseClient
from support.electors import Electors
from support.procs import ServiceProcess
from support.tokens import TokenSet

SLOW_RETRY = Config(term=4.0, renew=0.5, retry=30.0)
"""Only the watch stream can wake a follower within the tests' bounds."""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    return TokenSet.write(path, writer=("write", ""), operator=("admin", ""))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tokens: TokenSet) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("data")
    args = ("--auth-file", str(tokens.path))
    with ServiceProcess(data.as_uri(), extra_args=args, log_path=data.parent / "svc.log") as svc:
        yield svc


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.elected: dict[str, threading.Event] = {}

    def hooks(self) -> dict[str, Callable[..., None]]:
        def elected(identity: str, cancel: Callable[[], None]) -> None:
            self.seen.append(("elected", identity))
            self.elected.setdefault(identity, threading.Event()).set()

        def ousting(identity: str, cancel: Callable[[], None]) -> None:
            self.seen.append(("ousting", identity))

        return {"on_elected": elected, "on_ousting": ousting}


def test_transfer_hands_the_lease_to_the_named_follower_at_once(
    electors: Electors, service: ServiceProcess, tokens: TokenSet, key: str
) -> None:
    ev = Events()
    url, token = service.url, tokens.tokens["writer"]
    new = lambda name: electors.new(  # noqa: E731
        electors.client(url, token=token), key, identity=name, config=SLOW_RETRY, **ev.hooks()
    )
    a, b, c = new("a"), new("b"), new("c")
    with a:
        assert a.wait_for_leadership(20)
        with c, b:
            assert not b.wait_for_leadership(1.0) and not c.is_leader
            started = time.monotonic()
            handed = a.transfer("b")
            assert handed is not None and handed.successor == "b" and not handed.held
            assert b.wait_for_leadership(10)
            took = time.monotonic() - started
            assert took < 10 < SLOW_RETRY.retry  # the watch stream woke it
            assert b.lease is not None and b.lease.fencing_token == handed.fencing_token + 1
            assert not c.is_leader
            print(f"transfer to on_elected {took:.3f} s")
    assert ev.seen[:3] == [("elected", "a"), ("ousting", "a"), ("elected", "b")]
    assert ("elected", "c") not in ev.seen


def test_an_operators_transfer_makes_the_leader_step_down_for_the_successor(
    electors: Electors, service: ServiceProcess, tokens: TokenSet, key: str
) -> None:
    ev = Events()
    url, token = service.url, tokens.tokens["writer"]
    new = lambda name: electors.new(  # noqa: E731
        electors.client(url, token=token), key, identity=name, config=SLOW_RETRY, **ev.hooks()
    )
    a, b = new("a"), new("b")
    with a:
        assert a.wait_for_leadership(20)
        with b:
            with LeaseClient(url, token=tokens.tokens["operator"]) as admin:
                named = admin.transfer(key, to="b")
            assert named.held and named.holder == "a" and named.successor == "b"
            # a's next renew (every 0.5 s) is refused: it steps down and releases
            assert b.wait_for_leadership(10)
            assert not a.is_leader
            assert b.lease is not None and b.lease.fencing_token == named.fencing_token + 1
    assert ev.seen[:3] == [("elected", "a"), ("ousting", "a"), ("elected", "b")]


def test_client_transfer_refuses_a_bad_request_before_sending(
    service: ServiceProcess, tokens: TokenSet, tmp_path: Path
) -> None:
    with LeaseClient(service.url, token=tokens.tokens["writer"]) as client:
        with pytest.raises(ValueError):
            client.transfer("k", "a", None, "b")
        with pytest.raises(ValueError):
            client.transfer("k", "a", 1, "")
