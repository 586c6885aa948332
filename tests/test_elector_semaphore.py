"""``LeaderElector(..., limit=N)`` and its async twin against a real service: N lead at once.

Each scenario runs on both electors (``support.electors``). Five electors on
a key with limit 3: exactly three are elected, each with its own fencing
token; when one stops (releasing its slot) a waiting one is elected in its
place; at no moment do more than three say they lead.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from leaderelection import Config, LeaseClient, LimitMismatch
from support.electors import Electors
from support.procs import ServiceProcess, wait_until

FAST = Config(term=2.0, renew=0.4, retry=0.3)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("data")
    with ServiceProcess(data.as_uri(), log_path=data.parent / "service.log") as svc:
        yield svc


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]


def test_three_of_five_lead_and_a_stopped_one_is_replaced(
    electors: Electors, service: ServiceProcess, key: str
) -> None:
    lock = threading.Lock()
    leading: set[str] = set()
    most = [0]

    def elected(me: str, _cancel: object) -> None:
        with lock:
            leading.add(me)
            most[0] = max(most[0], len(leading))

    def ousting(me: str, _cancel: object) -> None:
        with lock:
            leading.discard(me)

    group = [
        electors.new(service.url, key, config=FAST, limit=3, on_elected=elected, on_ousting=ousting)
        for _ in range(5)
    ]
    for e in group:
        e.start()
    try:
        wait_until(lambda: sum(e.is_leader for e in group) == 3, 20, what="three leaders")
        leaders = [e for e in group if e.is_leader]
        tokens = {e.lease.fencing_token for e in leaders if e.lease is not None}
        assert len(tokens) == 3
        with LeaseClient(service.url) as client:
            rec = client.get(key)
            assert rec.limit == 3 and {h.holder for h in rec.holders} == {
                e.identity for e in leaders
            }
        leaders[0].stop()
        waiting = [e for e in group if e not in leaders]
        wait_until(lambda: any(e.is_leader for e in waiting), 20, what="a waiting one elected")
        assert sum(e.is_leader for e in group) == 3
        (new,) = [e for e in waiting if e.is_leader]
        assert new.lease is not None and new.lease.fencing_token > max(tokens)
    finally:
        for e in group:
            e.stop()
    assert most[0] <= 3


def test_client_limit_mismatch(service: ServiceProcess, key: str) -> None:
    with LeaseClient(service.url) as client:
        client.acquire(key, "a", 10)
        with pytest.raises(LimitMismatch) as err:
            client.acquire(key, "b", 10, limit=3)
        assert err.value.status == 409 and err.value.lease is not None
        assert err.value.lease.holder == "a" and err.value.lease.limit == 1


@pytest.mark.parametrize("limit", [0, 1001, True, 2.5, "3"])
def test_elector_checks_its_limit(service: ServiceProcess, limit: object) -> None:
    from leaderelection import LeaderElector

    with LeaseClient(service.url) as client, pytest.raises((TypeError, ValueError)):
        LeaderElector(client, "k", limit=limit)  # type: ignore[arg-type]
