"""A per-account rate limiter: excess calls wait for their slot, like ccxt's, instead of failing.

Slots are handed out synchronously (no lock, so no event-loop binding): each call takes the next
free slot ``1 / rate`` seconds after the previous one and sleeps until it comes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    def __init__(self, rate_per_second: float, *, clock: Clock = time.monotonic) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be > 0")
        self.interval = 1.0 / rate_per_second
        self._clock = clock
        self._next_slot = float("-inf")
        self._lock = threading.Lock()  # slots are claimed without awaiting: safe across loops

    def claim_slot(self) -> float:
        """Reserve the next slot; return how long the caller must wait for it (0 when free now)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
            return slot - now

    async def wait(self, sleep: Sleep = asyncio.sleep) -> float:
        delay = self.claim_slot()
        if delay > 0:
            await sleep(delay)
        return delay


_ACCOUNT_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for_account(account: str, rate_per_second: float) -> RateLimiter:
    """The process-wide limiter of one account (per rate), shared by all its PaperExchange instances."""
    key = (account, rate_per_second)
    with _REGISTRY_LOCK:
        limiter = _ACCOUNT_LIMITERS.get(key)
        if limiter is None:
            limiter = _ACCOUNT_LIMITERS[key] = RateLimiter(rate_per_second)
        return limiter
