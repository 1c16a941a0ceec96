"""Coalescing calls made within one event-loop turn into one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.coalesce import Coalescer


class Doubler:
    """A batch function that doubles numbers and refuses negative ones (failing the whole batch)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return [item * 2 for item in items]


async def test_calls_in_one_loop_turn_run_as_one_batch_and_each_caller_gets_its_own_result() -> None:
    run = Doubler()
    double = Coalescer(run)
    assert await asyncio.gather(*(double(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert run.batches == [[0, 1, 2, 3, 4]]
    assert await double(7) == 14  # a lone call runs on the next turn
    assert run.batches[-1] == [7]


async def test_a_full_batch_starts_at_once_and_the_rest_follow_in_the_next() -> None:
    run = Doubler()
    double = Coalescer(run, max_batch=3)
    assert await asyncio.gather(*(double(i) for i in range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert run.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_one_bad_item_fails_only_its_own_caller() -> None:
    run = Doubler()
    double = Coalescer(run)
    results = await asyncio.gather(double(1), double(-1), double(3), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)
    assert run.batches == [[1, -1, 3], [1], [-1], [3]]  # the batch, then item by item


async def test_a_lost_connection_fails_every_caller_without_retrying_item_by_item() -> None:
    calls: list[list[int]] = []

    async def unreachable(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        raise ConnectionResetError("database gone")

    coalesced = Coalescer(unreachable)
    results = await asyncio.gather(coalesced(1), coalesced(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert calls == [[1, 2]]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    run = Doubler()
    double = Coalescer(run)
    first = asyncio.ensure_future(double(1))
    second = asyncio.ensure_future(double(2))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    assert await second == 4
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_batch_returning_the_wrong_number_of_results_fails_its_callers() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    coalesced = Coalescer(short)
    results = await asyncio.gather(coalesced(1), coalesced(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


class Gate:
    """A batch function that holds each batch until released, to see what queues meanwhile."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        return [item * 2 for item in items]


async def test_calls_made_while_a_batch_is_in_flight_go_together_when_it_ends() -> None:
    run = Gate()
    double = Coalescer(run)
    first = asyncio.ensure_future(double(1))
    await asyncio.sleep(0.01)  # the first batch is in flight
    later = [asyncio.ensure_future(double(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    more = asyncio.ensure_future(double(4))  # a later loop turn: still the same next batch
    await asyncio.sleep(0.01)
    assert run.batches == [[1]]
    run.release.set()
    assert await asyncio.gather(first, *later, more) == [2, 4, 6, 8]
    assert run.batches == [[1], [2, 3, 4]]


async def test_a_full_batch_starts_even_while_another_is_in_flight() -> None:
    run = Gate()
    double = Coalescer(run, max_batch=2)
    calls = [asyncio.ensure_future(double(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert run.batches == [[0, 1], [2, 3]]  # two full ones at once; 4 waits for one of them
    run.release.set()
    assert await asyncio.gather(*calls) == [0, 2, 4, 6, 8]
    assert run.batches == [[0, 1], [2, 3], [4]]


async def test_more_batches_in_flight_when_allowed() -> None:
    run = Gate()
    double = Coalescer(run, max_in_flight=2)
    first = asyncio.ensure_future(double(1))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(double(2))
    await asyncio.sleep(0.01)
    third = asyncio.ensure_future(double(3))
    await asyncio.sleep(0.01)
    assert run.batches == [[1], [2]]
    run.release.set()
    assert list(await asyncio.gather(first, second, third)) == [2, 4, 6]
    assert run.batches == [[1], [2], [3]]


async def test_calls_waiting_behind_a_failed_batch_still_run() -> None:
    failing = asyncio.Event()
    batches: list[list[int]] = []

    async def fails_first(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await failing.wait()
            raise ConnectionResetError("database gone")
        return [item * 2 for item in items]

    coalesced = Coalescer(fails_first)
    first = asyncio.ensure_future(coalesced(1))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(coalesced(2))
    await asyncio.sleep(0.01)
    failing.set()
    with pytest.raises(ConnectionResetError):
        await first
    assert await asyncio.wait_for(second, 1) == 4
    assert batches == [[1], [2]]
