"""The paper exchange's rate limiter, on an injected clock."""

from __future__ import annotations

import pytest

from services.common.exchanges.paper_limiter import RateLimiter, limiter_for_account


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_calls_are_spaced_by_the_interval() -> None:
    time = FakeTime()
    limiter = RateLimiter(4, clock=time.clock)
    starts = []
    for _ in range(5):
        await limiter.wait(time.sleep)
        starts.append(time.now)
    assert starts == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_concurrent_claims_queue_up_behind_each_other() -> None:
    time = FakeTime()
    limiter = RateLimiter(10, clock=time.clock)
    assert [limiter.claim_slot() for _ in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    time.now = 5.0  # idle for a while: no burst credit is saved up beyond one free slot
    assert [limiter.claim_slot() for _ in range(2)] == pytest.approx([0.0, 0.1])


def test_one_limiter_per_account_and_rate_in_the_process() -> None:
    assert limiter_for_account("limiter-a", 3) is limiter_for_account("limiter-a", 3)
    assert limiter_for_account("limiter-a", 3) is not limiter_for_account("limiter-b", 3)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(0)
