"""CasLeases after a lost compare-and-set: read again, decide again, back off
with jitter when losing in a row, and answer 503 (never a wrong lease_lost)
when every attempt lost."""

from __future__ import annotations

from dataclasses import replace

import pytest

from leaderelection_service import lease_rules
from leaderelection_service.backends.memory import MemoryStore
from leaderelection_service.contention import backoff
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.lease_rules import CasLeases
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


async def held_by_a(store: RivalStore, max_attempts: int = 16) -> tuple[CasLeases, int]:
    lease = CasLeases(store, max_attempts=max_attempts)
    view = await lease.acquire("k", "a", 10.0)
    store.attempts = 0
    return lease, view.record.fencing_token


async def test_renew_wins_after_losing_races(waits: list[float]) -> None:
    store = RivalStore(losses=5)
    lease, token = await held_by_a(store)
    view = await lease.renew("k", "a", token, None)
    assert view.record.holder == "a" and view.record.fencing_token == token
    assert store.attempts == 6  # five lost, the sixth won
    # the first retry goes at once; each of the three later ones waits at most 50 ms
    assert len(waits) == 4
    assert all(0.0 <= w <= 0.05 for w in waits), waits


@pytest.mark.parametrize("max_attempts", [1, 2, 7])
async def test_every_attempt_lost_is_unavailable_not_lost(
    waits: list[float], max_attempts: int
) -> None:
    store = RivalStore(losses=10_000)
    lease, token = await held_by_a(store, max_attempts)
    with pytest.raises(BackendUnavailable, match="contended"):
        await lease.renew("k", "a", token, None)
    assert store.attempts == max_attempts
    assert len(waits) == max(0, max_attempts - 2)  # no wait before the first retry


# Upper bound of the wait before attempt n (0-based): 1 ms doubling, capped at 50 ms.
BOUNDS = {2: 0.004, 3: 0.008, 4: 0.016, 5: 0.032, 6: 0.05, 7: 0.05, 19: 0.05}


@pytest.mark.parametrize(("attempt", "bound"), sorted(BOUNDS.items()))
def test_backoff_doubles_up_to_the_cap(attempt: int, bound: float) -> None:
    samples = [backoff(attempt) for _ in range(400)]
    assert all(0.0 <= s <= bound for s in samples), max(samples)
    # full jitter spans the range: a sample in its top quarter and one in its bottom
    # quarter (each misses 400 draws with probability 0.75**400, about 1e-50)
    assert max(samples) > 0.75 * bound and min(samples) < 0.25 * bound
