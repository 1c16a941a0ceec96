"""A TTL cache where one loader call serves every concurrent caller of a key: prices, market
rules and ccxt markets shared by every account of a process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    expires_at: float


class _Abandoned(Exception):
    """The loading caller was cancelled: its waiters load again instead of being cancelled too."""


class SingleFlightCache(Generic[T]):
    """A TTL cache where one loader call serves every concurrent caller of a key. A loader's error
    reaches every caller waiting on it; a cancelled loader leaves them to load again."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._in_flight: dict[Hashable, asyncio.Future[T]] = {}
        self.loads = 0  # how many times a loader actually ran (for tests and metrics)

    async def get(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> T:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > self._clock():
                return entry.value
            pending = self._in_flight.get(key)
            if pending is None:
                return await self._load(key, loader)
            try:
                return await asyncio.shield(pending)
            except _Abandoned:
                continue

    async def _load(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            self.loads += 1
            value = await loader()
        except BaseException as exc:
            future.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        else:
            self.put(key, value)
            future.set_result(value)
            return value
        finally:
            del self._in_flight[key]

    def put(self, key: Hashable, value: T) -> None:
        """``value`` is the freshest for ``key`` (loaded outside ``get``, by an explicit reload)."""
        self._entries[key] = _Entry(value, self._clock() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()
