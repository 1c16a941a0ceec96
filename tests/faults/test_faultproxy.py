"""The fault proxy itself, against a recording echo server: each mode does what it says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.support.faultproxy import FaultProxy, proxied_url

pytestmark = pytest.mark.faults


@contextlib.asynccontextmanager
async def echo_server(received: list[bytes]) -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                received.append(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def exchange(port: int, payload: bytes, wait: float = 2.0) -> bytes:
    """Send ``payload``; what came back before EOF, a reset or ``wait`` seconds of silence."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(1024), wait)
        except (TimeoutError, ConnectionError):
            return b""
    finally:
        writer.close()


async def test_each_mode_of_the_proxy() -> None:
    received: list[bytes] = []
    async with echo_server(received) as port, FaultProxy("127.0.0.1", port) as proxy:
        assert await exchange(proxy.port, b"pass") == b"pass"

        proxy.latency(50)
        assert await exchange(proxy.port, b"slow") == b"slow"

        proxy.reset()
        assert await exchange(proxy.port, b"reset") == b""
        assert b"reset" not in received and proxy.stats.reset >= 1

        proxy.blackhole()
        assert await exchange(proxy.port, b"hole", wait=0.3) == b""
        assert b"hole" not in received and proxy.stats.swallowed >= 4

        proxy.drop_responses(1)
        assert await exchange(proxy.port, b"lost answer") == b""
        assert b"lost answer" in received  # the request reached the server; only its answer vanished
        assert proxy.drops_left == 0 and proxy.stats.responses_dropped == 1
        assert await exchange(proxy.port, b"next") == b"next"  # one drop only

        proxy.passthrough()
        assert await exchange(proxy.port, b"again") == b"again"


def test_proxied_url_keeps_credentials_and_path() -> None:
    assert proxied_url("postgresql://u:p@db.example:5432/rb?sslmode=off", 6000) == (
        "postgresql://u:p@127.0.0.1:6000/rb?sslmode=off")
    assert proxied_url("nats://127.0.0.1:4222", 7000) == "nats://127.0.0.1:7000"
