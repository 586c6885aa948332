"""CasLeases after a lost compare-and-set: read again, decide again, back off
with jitter when losing in a row, and answer 503 (never a wrong lease_lost)
when every attempt lost."""

from __future__ import annotations

from dataclasses import replace

import pytest

from leaderelection_service import lease_rules
from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.lease_rules import BACKOFF_CAP, CasLeases, backoff
from leaderelection_service.records import LeaseRecord


class RivalStore(MemoryStore):
    """Before each of our first ``losses`` writes lands, a rival process renews the key."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.attempts = 0

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        self.attempts += 1
        if self.attempts <= self.losses and expected is not None:
            cur = await self.read(key)
            assert cur is not None
            rival = replace(cur.record, revision=cur.record.revision + 1)
            await super().write(key, rival, cur.version)  # the rival's write lands first
        return await super().write(key, record, expected)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    seen: list[float] = []

    async def no_wait(seconds: float) -> None:
        seen.append(seconds)

    monkeypatch.setattr(lease_rules.asyncio, "sleep", no_wait)
    return seen


async def held_by_a(store: RivalStore) -> tuple[CasLeases, int]:
    lease = CasLeases(store)
    view = await lease.acquire("k", "a", 10.0)
    store.attempts = 0
    return lease, view.record.fencing_token


async def test_renew_wins_after_losing_races(waits: list[float]) -> None:
    store = RivalStore(losses=5)
    lease, token = await held_by_a(store)
    view = await lease.renew("k", "a", token, None)
    assert view.record.holder == "a" and view.record.fencing_token == token
    assert store.attempts == 6
    # the first retry goes at once; each later one waits a jittered, capped time
    assert len(waits) == 4
    assert all(0.0 <= w <= BACKOFF_CAP for w in waits)


async def test_every_attempt_lost_is_unavailable_not_lost(waits: list[float]) -> None:
    store = RivalStore(losses=10_000)
    lease, token = await held_by_a(store)
    with pytest.raises(BackendUnavailable, match="contended"):
        await lease.renew("k", "a", token, None)
    assert store.attempts == 16
    assert len(waits) == 14


def test_backoff_doubles_up_to_the_cap() -> None:
    for attempt in range(2, 20):
        bound = min(BACKOFF_CAP, lease_rules.BACKOFF_BASE * 2**attempt)
        samples = [backoff(attempt) for _ in range(200)]
        assert all(0.0 <= s <= bound for s in samples)
        assert max(samples) > bound / 2  # jitter spans the range, not one point
