"""KeyedLocks: one holder per key at a time, other keys never wait, and no lock outlives its use."""

from __future__ import annotations

import asyncio

from services.common.keyed_locks import KeyedLocks


async def test_one_holder_per_key_in_arrival_order_and_other_keys_run_meanwhile() -> None:
    locks = KeyedLocks()
    events: list[str] = []
    release_first = asyncio.Event()

    async def work(key: str, name: str, wait: asyncio.Event | None = None) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            if wait is not None:
                await wait.wait()
            events.append(f"{name} out")

    first = asyncio.create_task(work("a", "a1", release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(work("a", "a2"))
    other = asyncio.create_task(work("b", "b1"))
    await other  # another key is not held back
    assert events == ["a1 in", "b1 in", "b1 out"]
    assert len(locks) == 1  # "a": held and waited for; "b" is gone
    release_first.set()
    await asyncio.gather(first, second)
    assert events[3:] == ["a1 out", "a2 in", "a2 out"]
    assert len(locks) == 0


async def test_a_failing_holder_releases_and_forgets_its_lock() -> None:
    locks = KeyedLocks()
    try:
        async with locks.hold("k"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0
    async with locks.hold("k"):
        assert len(locks) == 1
