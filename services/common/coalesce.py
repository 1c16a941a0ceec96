"""Coalescing: calls made within one event-loop turn run as one batch.

Many runs go through the same step at once (a burst of plans completing together); each step is
a database round trip, a transaction and a commit. A ``Coalescer`` gathers the calls made in one
turn of the event loop and runs them with one statement, each caller still awaiting its own
result. A lone call waits for nothing but the next loop turn.

A batch that fails on something other than a lost connection is run again item by item, so one
bad item fails only its own caller; a batch must therefore be all or nothing (one statement).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from services.common.db import TRANSIENT_DB_ERRORS

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 500,
    ) -> None:
        """``run(items)`` returns one result per item, in order, or raises for the whole batch."""
        self._run = run
        self.max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # how many batches ran (for tests and benchmarks)

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if len(self._waiting) >= self.max_batch:
            self._start()
        elif len(self._waiting) == 1:
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        if not self._waiting:
            return  # already started when the batch filled up
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._flush(batch))
        self._tasks.add(task)  # keep a reference until done
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self.batches += 1
        try:
            results = await self._run([item for item, _ in batch])
        except TRANSIENT_DB_ERRORS as error:  # every item would fail alike: each caller retries
            _fail(batch, error)
            return
        except BaseException as error:
            if len(batch) == 1 or not isinstance(error, Exception):
                _fail(batch, error)
                if not isinstance(error, Exception):
                    raise
                return
            for one in batch:  # find the item at fault; the others go through
                await self._flush([one])
            return
        if len(results) != len(batch):
            _fail(batch, RuntimeError(f"batch of {len(batch)} returned {len(results)} results"))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)


def _fail(batch: Sequence[tuple[object, asyncio.Future[Result]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
