"""The bus's batch drain on real JetStream: it takes what the consumer holds right now and leaves
no pull request waiting on the server, so the next message is not captured by a drain that has
already returned (nats-py's fetch always sends ``expires``, which makes such a request linger)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from services.common.bus import _available_now

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[tuple[JetStreamContext, str]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = f"DRAIN{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    try:
        yield js, name
    finally:
        await js.delete_stream(name)
        await nc.close()


async def test_the_drain_takes_what_is_there_and_leaves_no_lingering_pull(
    js: tuple[JetStreamContext, str],
) -> None:
    jetstream, name = js
    subject = f"{name.lower()}.x"
    sub = await jetstream.pull_subscribe(subject, durable="drainer", stream=name)
    for n in range(3):
        await jetstream.publish(subject, f"m{n}".encode())

    [first] = await sub.fetch(batch=1, timeout=5)
    rest = await _available_now(sub, 10)
    assert [m.data for m in [first, *rest]] == [b"m0", b"m1", b"m2"]
    assert await _available_now(sub, 10) == []  # nothing there: an empty answer, not a wait

    await jetstream.publish(subject, b"later")
    await asyncio.sleep(0.3)
    assert sub._sub._pending_queue.qsize() == 0, "a pull request was left waiting on the server"
    assert (await sub.consumer_info()).num_pending == 1
    [later] = await sub.fetch(batch=1, timeout=5)
    assert later.data == b"later"
