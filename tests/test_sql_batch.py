"""PostgreSQL batches: concurrent acquires and renewals share a statement, each caller
gets the answer its single statement would give.

- distinct keys in every state (new, held by the caller, held by another,
  released, lapsed) acquired at once: each answered as the contract says, in
  fewer statements than calls, a refusal answered in the same round trip;
- one key wanted by many at once: exactly one winner, every loser
  ``lease_held`` with the winner's record, round after round (one leader (I1), fencing (I2));
- a lapsed lease taken over inside a batch: the token grows by one, once;
- a batch that PostgreSQL picks as a deadlock's victim (a transaction that
  locks keys in the other order) is answered by single statements;
- a caller that gives up while its batch runs leaves the others answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from leaderelection_service.backends.sql import SqlLeases
from leaderelection_service.backends.sql.postgresql import PgSql
from leaderelection_service.lease_errors import LeaseHeld, LeaseLost
from leaderelection_service.records import LeaseView


@pytest.fixture
async def backend(postgres_url: str) -> AsyncIterator[SqlLeases]:
    b = SqlLeases(postgres_url, pool_size=4)
    try:
        yield b
    finally:
        await b.close()


def pg(backend: SqlLeases) -> PgSql:
    assert isinstance(backend.db, PgSql)
    assert backend.db.acquires is not None and backend.db.renewals is not None
    return backend.db


async def lapse(backend: SqlLeases, key: str) -> None:
    """Wait until ``key``'s lease has lapsed on the database clock."""
    deadline = time.monotonic() + 10
    while (await backend.get(key)).held:
        assert time.monotonic() < deadline, f"{key} never lapsed"
        await asyncio.sleep(0.02)


async def attempt(backend: SqlLeases, key: str, holder: str) -> LeaseView | LeaseHeld:
    try:
        return await backend.acquire(key, holder, 30.0)
    except LeaseHeld as err:
        return err


async def test_acquires_on_distinct_keys_share_statements_and_each_is_answered(
    backend: SqlLeases,
) -> None:
    db = pg(backend)
    n = 8
    others = [await backend.acquire(f"other{i}", "owner", 60.0) for i in range(n)]
    mine = [await backend.acquire(f"mine{i}", "me", 60.0) for i in range(n)]
    for i in range(n):
        view = await backend.acquire(f"gone{i}", "old", 60.0)
        await backend.release(f"gone{i}", "old", view.record.fencing_token)
        await backend.acquire(f"lapsed{i}", "old", 0.2)
    for i in range(n):
        await lapse(backend, f"lapsed{i}")

    kinds = ["new", "other", "mine", "gone", "lapsed"]
    batches, statements = db.acquires.batches, db.statements  # type: ignore[union-attr]
    answers = await asyncio.gather(
        *(attempt(backend, f"{kind}{i}", "me") for i in range(n) for kind in kinds)
    )
    by_key = {f"{kind}{i}": a for (i, kind), a in zip(
        [(i, kind) for i in range(n) for kind in kinds], answers, strict=True
    )}  # fmt: skip

    for i in range(n):
        new = by_key[f"new{i}"]
        assert isinstance(new, LeaseView) and new.held
        assert (new.record.holder, new.record.fencing_token, new.record.transitions) == ("me", 1, 0)

        held = by_key[f"other{i}"]
        assert isinstance(held, LeaseHeld) and held.lease is not None
        assert held.lease.record == others[i].record  # unchanged, and said in the answer
        assert held.lease.held

        again = by_key[f"mine{i}"]
        assert isinstance(again, LeaseView) and again.held
        assert again.record.fencing_token == mine[i].record.fencing_token  # idempotent
        assert again.record.revision == mine[i].record.revision + 1
        assert again.record.renewed_at > mine[i].record.renewed_at and again.record.ttl == 30.0

        for kind in ("gone", "lapsed"):
            taken = by_key[f"{kind}{i}"]
            assert isinstance(taken, LeaseView) and taken.held
            assert (taken.record.holder, taken.record.fencing_token) == ("me", 2)
            assert taken.record.transitions == 1
            ended = "released" if kind == "gone" else "expired"
            assert [(t.holder, t.fencing_token, t.ended_by) for t in taken.record.history] == [
                ("old", 1, ended),
                ("me", 2, None),
            ]

    ran = db.acquires.batches - batches  # type: ignore[union-attr]
    assert 1 <= ran < len(answers)
    assert db.statements - statements == ran  # refusals too: no second round trip


async def test_one_key_wanted_by_many_one_winner_losers_see_the_winner(
    backend: SqlLeases,
) -> None:
    db = pg(backend)
    for rnd in range(1, 6):
        answers = await asyncio.gather(*(attempt(backend, "hot", f"r{rnd}-{j}") for j in range(12)))
        wins = [a for a in answers if isinstance(a, LeaseView)]
        assert len(wins) == 1, answers
        win = wins[0].record
        assert win.fencing_token == rnd  # one new term per round, never twice
        for lost in answers:
            if isinstance(lost, LeaseHeld):
                assert lost.lease is not None and lost.lease.held
                assert (lost.lease.record.holder, lost.lease.record.fencing_token) == (
                    win.holder,
                    win.fencing_token,
                )
        await backend.release("hot", win.holder, win.fencing_token)
    assert db.acquires.items >= 60  # type: ignore[union-attr]


async def test_lapsed_lease_taken_over_in_a_batch_increments_the_token_once(
    backend: SqlLeases,
) -> None:
    first = await backend.acquire("x", "old", 0.2)
    await lapse(backend, "x")
    calls = [attempt(backend, "x", f"rival{j}") for j in range(6)]
    calls += [attempt(backend, f"side{j}", "me") for j in range(6)]
    answers = await asyncio.gather(*calls)

    wins = [a for a in answers[:6] if isinstance(a, LeaseView)]
    assert len(wins) == 1
    win = wins[0].record
    assert win.fencing_token == first.record.fencing_token + 1
    assert win.transitions == 1
    for lost in answers[:6]:
        if isinstance(lost, LeaseHeld):
            assert lost.lease is not None
            assert lost.lease.record.holder == win.holder
            assert lost.lease.record.fencing_token == win.fencing_token
    assert all(isinstance(a, LeaseView) for a in answers[6:])
    now = (await backend.get("x")).record
    assert (now.holder, now.fencing_token, now.revision) == (win.holder, 2, 2)
    assert [(t.holder, t.fencing_token, t.ended_by) for t in now.history] == [
        ("old", 1, "expired"),
        (win.holder, 2, None),
    ]


async def test_a_batch_chosen_as_deadlock_victim_is_answered_by_single_statements(
    backend: SqlLeases,
) -> None:
    db = pg(backend)
    await backend.acquire("a", "me", 60.0)
    await backend.acquire("b", "other", 60.0)
    # A transaction that locks b, then a: the batch locks a, then waits for b.
    other = await psycopg.AsyncConnection.connect(backend._conninfo())
    watcher = await psycopg.AsyncConnection.connect(backend._conninfo(), autocommit=True)
    try:
        await other.execute("SET deadlock_timeout = '20s'")  # so the batch's check fires first
        await other.execute("SELECT 1 FROM leaderelection_leases WHERE lease_key = 'b' FOR UPDATE")
        statements = db.statements
        batch = asyncio.create_task(
            db._acquire_batch([("a", "me", 30_000_000, None), ("b", "me", 30_000_000, "v")])
        )
        deadline = time.monotonic() + 30
        while True:  # until the batch waits for b's lock, which the other transaction holds
            cur = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (other.info.backend_pid,),
            )
            row = await cur.fetchone()
            if row and row[0]:
                break
            assert time.monotonic() < deadline and not batch.done()
            await asyncio.sleep(0.01)
        # Lock a: a cycle; PostgreSQL rolls the batch back, then this gets a.
        await other.execute("SELECT 1 FROM leaderelection_leases WHERE lease_key = 'a' FOR UPDATE")
        await other.rollback()
        a, b = await asyncio.wait_for(batch, 30)  # each item's row, in order
    finally:
        await other.close()
        await watcher.close()
    assert db.statements - statements == 3  # the batch, then each key's own statement
    assert a is not None and a.holder == "me" and a.granted  # extended, same term
    assert b is not None and b.holder == "other" and not b.granted  # refused, current row


async def test_callers_that_give_up_leave_the_others_answered(backend: SqlLeases) -> None:
    views = [await backend.acquire(f"k{i}", f"h{i}", 60.0) for i in range(10)]
    batcher = pg(backend).renewals
    assert batcher is not None
    batches, items = batcher.batches, batcher.items
    renewals = [
        asyncio.create_task(backend.renew(f"k{i}", f"h{i}", views[i].record.fencing_token, 20.0))
        for i in range(10)
    ]
    await asyncio.sleep(0)  # let each renewal start
    # pool_size=4 allows one batch in flight: k0's is formed (alone), the nine others wait
    assert (batcher.batches - batches, batcher.items - items) == (1, 1)
    renewals[0].cancel()  # its batch is formed
    renewals[3].cancel()  # still waiting
    done = await asyncio.gather(*renewals, return_exceptions=True)
    # one more batch carried the eight still wanted: the cancelled waiter was left out
    assert (batcher.batches - batches, batcher.items - items) == (2, 9)
    for i, view in enumerate(done):
        if i in (0, 3):
            assert isinstance(view, asyncio.CancelledError)
        else:
            assert isinstance(view, LeaseView) and view.record.ttl == 20.0
    assert (await backend.get("k0")).record.ttl == 20.0  # its batch ran all the same
    assert (await backend.get("k3")).record.ttl == 60.0  # never sent
    for i in range(10):  # and every connection is usable afterwards
        again = await backend.renew(f"k{i}", f"h{i}", views[i].record.fencing_token, 25.0)
        assert again.record.ttl == 25.0


async def test_generic_plans_use_the_primary_key_even_on_a_tiny_table(backend: SqlLeases) -> None:
    # A generic plan made while the table holds one row must not scan it whole
    # once it holds thousands (prepared statements keep their generic plan).
    await backend.acquire("tiny", "a", 30.0)
    db = pg(backend)
    st = db.st
    assert st.renew_batch is not None
    sql = st.renew_batch
    for i, name in enumerate(("keys", "holders", "tokens", "ttls", "values", "announced"), 1):
        sql = sql.replace(f"%({name})s", f"${i}")
    conn, epoch = await db.pool.take()
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE probe AS {sql}")
        cur = await conn.execute(
            "EXPLAIN EXECUTE probe('{tiny}', '{a}', '{1}', '{1000}', '{NULL}', '{NULL}')"
        )
        plan = "\n".join(row[0] for row in await cur.fetchall())
        await conn.execute("DEALLOCATE probe")
        await conn.execute("RESET plan_cache_mode")
    finally:
        await db.pool.give(conn, epoch)
    assert "Index Scan" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_batched_acquires_and_renewals_carry_each_callers_value(backend: SqlLeases) -> None:
    db = pg(backend)
    n = 8
    first = await asyncio.gather(
        *(backend.acquire(f"val{i}", f"h{i}", 60.0, f"a{i}" if i % 2 else None) for i in range(n))
    )
    assert [v.record.value for v in first] == [f"a{i}" if i % 2 else None for i in range(n)]
    batches = db.renewals.batches  # type: ignore[union-attr]
    renewed = await asyncio.gather(
        *(
            backend.renew(
                f"val{i}", f"h{i}", first[i].record.fencing_token, None,
                f"r{i}" if i % 3 else None, i % 3 == 1,
            )
            for i in range(n)
        )
    )  # fmt: skip
    assert db.renewals.batches > batches  # type: ignore[union-attr]
    for i, view in enumerate(renewed):
        want = f"r{i}" if i % 3 else first[i].record.value
        assert view.record.value == want
        assert (await backend.get(f"val{i}")).record.value == want
        assert view.record.announced is (i % 3 == 1)


async def test_batched_renewals_and_acquires_keep_rule_transfer(backend: SqlLeases) -> None:
    """A renew of a term being handed on is refused in a batch too (rule "transfer"), and a
    batched acquire grants a handed-on lease to its successor alone."""
    db = pg(backend)
    n = 6
    plain = [await backend.acquire(f"plain{i}", "me", 60.0) for i in range(n)]
    named = [await backend.acquire(f"named{i}", "me", 60.0) for i in range(n)]
    for i in range(n):
        await backend.transfer(f"named{i}", "next")
    batches = db.renewals.batches  # type: ignore[union-attr]

    async def renew(key: str, token: int) -> LeaseView | LeaseLost:
        try:
            return await backend.renew(key, "me", token, 30.0)
        except LeaseLost as err:
            return err

    answers = await asyncio.gather(
        *(renew(f"plain{i}", plain[i].record.fencing_token) for i in range(n)),
        *(renew(f"named{i}", named[i].record.fencing_token) for i in range(n)),
    )
    assert db.renewals.batches > batches  # type: ignore[union-attr]
    assert all(isinstance(a, LeaseView) and a.held for a in answers[:n])
    for a in answers[n:]:
        assert isinstance(a, LeaseLost) and a.lease is not None
        assert a.lease.record.successor == "next" and a.lease.record.holder == "me"
    for i in range(n):
        await backend.release(f"named{i}", "me", named[i].record.fencing_token)
    tries = await asyncio.gather(
        *(attempt(backend, f"named{i}", who) for i in range(n) for who in ("other", "next"))
    )
    for i in range(n):
        other, successor = tries[2 * i], tries[2 * i + 1]
        # refused as reserved, or (if the successor's acquire ran first) as held by it
        assert isinstance(other, LeaseHeld) and other.lease is not None
        assert "handed to 'next'" in str(other) or other.lease.record.holder == "next"
        assert isinstance(successor, LeaseView) and successor.record.holder == "next"
        assert successor.record.successor is None
