"""The batching helper both batching backends use: order, own answers, failures, cancellation.

The runner here is a fake that holds each batch until the test opens its gate,
so every test decides when a batch ends; nothing waits on time. The backends'
own batches run against real storage in test_sql_batch.py and
test_file_commit.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from leaderelection_service.backends.batching import Batcher


class Boom(Exception):
    pass


class Runner:
    """Records each batch and holds it until ``release``; answers ``item * 10``,
    or the exception ``fail`` names for an item, or raises ``fail_all``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.fail: dict[int, BaseException] = {}
        self.fail_all: BaseException | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_all is not None:
            raise self.fail_all
        return [self.fail.get(i, i * 10) for i in items]

    def release(self, n: int) -> None:
        self.gates[n].set()


def batcher(run: Runner, **kw: Any) -> Batcher[int, int]:
    kw.setdefault("max_batch", 100)
    return Batcher(run, key=lambda i: i % 1000, **kw)  # 5 and 1005: the same key


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a bounded number of turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def submit(b: Batcher[int, int], *items: int) -> list[asyncio.Task[int]]:
    return [asyncio.ensure_future(b.submit(i)) for i in items]


async def test_the_first_call_runs_alone_and_the_waiting_ones_together_in_order() -> None:
    run = Runner()
    b = batcher(run)
    first = submit(b, 1)
    rest = submit(b, 2, 3, 4)
    await until(lambda: len(run.batches) == 1)
    run.release(0)
    assert await first[0] == 10
    await until(lambda: len(run.batches) == 2)
    assert run.batches == [[1], [2, 3, 4]]
    run.release(1)
    assert await asyncio.gather(*rest) == [20, 30, 40]
    assert (b.batches, b.items) == (2, 4)


async def test_an_items_own_exception_fails_it_alone() -> None:
    run = Runner()
    run.fail[3] = Boom("three")
    b = batcher(run)
    tasks = submit(b, 1, 2, 3, 4)
    await until(lambda: len(run.batches) == 1)
    run.release(0)
    await until(lambda: len(run.batches) == 2)
    run.release(1)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], Boom) and str(results[2]) == "three"


async def test_a_runner_exception_fails_every_caller_of_that_batch_and_no_other() -> None:
    run = Runner()
    b = batcher(run)
    first = submit(b, 1)
    second = submit(b, 2, 3)
    await until(lambda: len(run.batches) == 1)
    run.release(0)
    assert await first[0] == 10
    await until(lambda: len(run.batches) == 2)
    run.fail_all = Boom("the batch")
    run.release(1)
    results = await asyncio.gather(*second, return_exceptions=True)
    assert all(isinstance(r, Boom) and str(r) == "the batch" for r in results)
    run.fail_all = None  # the batcher goes on
    later = submit(b, 4)
    await until(lambda: len(run.batches) == 3)
    run.release(2)
    assert await later[0] == 40


async def test_a_runner_that_answers_the_wrong_number_of_outcomes_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    b: Batcher[int, int] = Batcher(short, key=lambda i: i, max_batch=10)
    with pytest.raises(RuntimeError, match="a batch of 1 answered 0 outcomes"):
        await b.submit(1)


async def test_a_caller_cancelled_before_its_batch_starts_is_left_out() -> None:
    run = Runner()
    b = batcher(run)
    first = submit(b, 1)
    waiting = submit(b, 2, 3, 4)
    await until(lambda: len(run.batches) == 1)
    waiting[1].cancel()
    run.release(0)
    await first[0]
    await until(lambda: len(run.batches) == 2)
    assert run.batches[1] == [2, 4]  # 3 never reached the runner
    run.release(1)
    assert [await waiting[0], await waiting[2]] == [20, 40]
    assert waiting[1].cancelled()


async def test_a_caller_cancelled_while_its_batch_runs_leaves_the_batch_running() -> None:
    run = Runner()
    b = batcher(run)
    tasks = submit(b, 1)
    await until(lambda: len(run.batches) == 1)
    tasks[0].cancel()
    await until(tasks[0].done)
    assert tasks[0].cancelled()
    others = submit(b, 2)  # the running batch still holds the slot
    assert len(run.batches) == 1
    run.release(0)
    await until(lambda: len(run.batches) == 2)  # the batch ended, its answer was dropped
    run.release(1)
    assert await others[0] == 20


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    run = Runner()
    b = batcher(run, max_batch=4)
    tasks = submit(b, *range(1, 11))
    for n in range(4):
        await until(lambda n=n: len(run.batches) == n + 1)  # type: ignore[misc]
        run.release(n)
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(1, 11)]
    assert run.batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]


async def test_a_key_is_in_one_batch_at_a_time() -> None:
    run = Runner()
    b = batcher(run, max_in_flight=2)
    tasks = submit(b, 5, 1005, 6)  # 5 and 1005 share a key
    await until(lambda: len(run.batches) == 2)
    assert run.batches == [[5], [6]]  # two slots; 1005 waits for 5's batch to end
    run.release(1)
    await tasks[2]
    await asyncio.sleep(0)
    assert len(run.batches) == 2  # a free slot, but the key is still busy
    run.release(0)
    await until(lambda: len(run.batches) == 3)
    assert run.batches[2] == [1005]
    run.release(2)
    assert await asyncio.gather(*tasks) == [50, 10050, 60]


async def test_at_most_max_in_flight_batches_run_at_once() -> None:
    run = Runner()
    b = batcher(run, max_in_flight=2)
    tasks = submit(b, 1, 2, 3, 4)
    await until(lambda: len(run.batches) == 2)
    assert run.batches == [[1], [2]]  # each call that found a free slot started a batch
    tasks += submit(b, 5)
    await asyncio.sleep(0)
    assert len(run.batches) == 2  # 3, 4 and 5 wait for a slot
    run.release(0)
    await until(lambda: len(run.batches) == 3)
    assert run.batches[2] == [3, 4, 5]  # the next batch takes every waiting call
    run.release(1)
    run.release(2)
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40, 50]


async def test_close_fails_the_waiting_calls_and_later_ones_and_lets_the_running_batch_end() -> (
    None
):
    run = Runner()
    b = batcher(run)
    running = submit(b, 1)
    waiting = submit(b, 2, 3)
    await until(lambda: len(run.batches) == 1)
    closing = asyncio.ensure_future(b.close(lambda: Boom("closed")))
    errors = await asyncio.gather(*waiting, return_exceptions=True)
    assert [str(e) for e in errors] == ["closed", "closed"]
    assert errors[0] is not errors[1]  # one exception object per caller
    assert not closing.done()  # the running batch is awaited
    run.release(0)
    await closing
    assert await running[0] == 10
    assert run.batches == [[1]]
    with pytest.raises(Boom, match="closed"):
        await b.submit(4)


async def test_a_runner_that_fails_before_it_starts_fails_its_batch() -> None:
    def broken(items: list[int]) -> Any:
        raise Boom("cannot start")

    b: Batcher[int, int] = Batcher(broken, key=lambda i: i, max_batch=10)
    with pytest.raises(Boom, match="cannot start"):
        await b.submit(1)
    with pytest.raises(Boom, match="cannot start"):  # and the next batch is tried anew
        await b.submit(2)


def test_sizes_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="both >= 1"):
        Batcher(Runner(), key=lambda i: i, max_batch=0)
    with pytest.raises(ValueError, match="both >= 1"):
        Batcher(Runner(), key=lambda i: i, max_batch=1, max_in_flight=0)
