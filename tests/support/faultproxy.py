"""A small asyncio TCP proxy that injects network faults between a service and NATS or PostgreSQL.

Point a service's ``NATS_URL`` / ``DATABASE_URL`` at ``proxy.port`` (see :func:`proxied_url`) and
switch the mode while the test runs:

- ``passthrough()``: forward both ways;
- ``latency(ms)``: forward both ways, each chunk delayed by ``ms`` (order kept);
- ``reset()``: abort every open connection (RST) and every new one while the mode lasts;
- ``blackhole()``: accept, forward nothing either way (a partition); the connections that saw
  it are aborted when the mode changes, as a real peer would eventually time them out;
- ``drop_responses(n)``: forward requests, but swallow the next ``n`` server-to-client chunks,
  each on its own connection, which is then aborted: the request took effect, its answer is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit, urlunsplit


class Mode(Enum):
    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    DROP_RESPONSE = "drop_response"


@dataclass
class ProxyStats:
    connections: int = 0
    reset: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    responses_dropped: int = 0
    swallowed: int = 0  # bytes eaten by the black hole


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tainted: bool = False  # saw the black hole: its byte streams have gaps
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: the peer sees 'connection reset', as on a real network fault."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    transport.abort()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.mode = Mode.PASS
        self.delay_seconds = 0.0
        self._drops_left = 0
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
            for task in link.tasks:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ modes
    def _leave_blackhole(self) -> None:
        for link in [link for link in self._links if link.tainted]:
            link.abort()

    def passthrough(self) -> None:
        self._leave_blackhole()
        self.mode, self.delay_seconds = Mode.PASS, 0.0

    def latency(self, ms: float) -> None:
        self._leave_blackhole()
        self.mode, self.delay_seconds = Mode.LATENCY, ms / 1000.0

    def reset(self) -> None:
        """Abort every connection now; new ones are aborted until the mode changes."""
        self.mode = Mode.RESET
        for link in list(self._links):
            link.abort()
            self.stats.reset += 1

    def blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE
        for link in self._links:
            link.tainted = True

    def drop_responses(self, count: int = 1) -> None:
        self._leave_blackhole()
        self.mode, self._drops_left = Mode.DROP_RESPONSE, count

    @property
    def drops_left(self) -> int:
        return self._drops_left

    # ------------------------------------------------------------------ plumbing
    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        link = _Link(client_writer)
        if self.mode is Mode.RESET:
            self.stats.reset += 1
            link.abort()
            return
        self._links.add(link)
        try:
            if self.mode is Mode.BLACKHOLE:
                link.tainted = True
                await self._swallow(client_reader)  # never reach the server
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                link.abort()
                return
            link.server = server_writer
            up = asyncio.create_task(self._pump(link, client_reader, server_writer, upstream=True))
            down = asyncio.create_task(self._pump(link, server_reader, client_writer, upstream=False))
            link.tasks = [up, down]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.abort()
            for task in link.tasks:
                task.cancel()
            self._links.discard(link)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                self.stats.swallowed += len(data)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await reader.read(65536):
                if self.mode is Mode.BLACKHOLE or link.tainted:
                    link.tainted = True
                    self.stats.swallowed += len(data)
                    continue
                if not upstream and self.mode is Mode.DROP_RESPONSE and self._drops_left > 0:
                    self._drops_left -= 1
                    self.stats.responses_dropped += 1
                    # The request went through; its answer vanishes and the connection dies
                    # a moment later (as a peer's keepalive would notice).
                    await asyncio.sleep(0.2)
                    link.abort()
                    return
                if self.mode is Mode.LATENCY and self.delay_seconds > 0:
                    await asyncio.sleep(self.delay_seconds)
                if upstream:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                writer.write(data)
                await writer.drain()


def proxied_url(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` (nats:// or postgresql://) with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{port}"))


def target_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 4222 if parts.scheme.startswith("nats") else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


@contextlib.asynccontextmanager
async def fault_proxy(url: str) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the server ``url`` names, for the duration of the block."""
    host, port = target_of(url)
    proxy = FaultProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
