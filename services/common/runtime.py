"""What every bus service does around its handlers: logging, the stream, the database pool, the
ops server (metrics and health), background loops, and a clean shutdown.

A service module builds a ``Runtime``, registers its consumers on ``runtime.bus`` and returns
``runtime.app()``: a FastStream application that ``python -m services.<name>`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
from faststream import FastStream
from faststream.specification import AsyncAPI

from contracts.subjects import Subjects
from services.common import db, metrics
from services.common.bus import Bus, OutboxRelay, ensure_stream
from services.common.health import nats_prometheus_middleware, start_ops_server
from services.common.logs import setup_logging
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
Hook = Callable[[], Awaitable[None]]

VERSION = "0.1.0"


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings, *, description: str = "") -> None:
        self.service = service
        self.settings = settings
        self.description = description
        self.bus = Bus(settings, service, middlewares=[nats_prometheus_middleware(service)])
        metrics.limit_portfolio_series(settings.portfolio_metrics_max)
        self.stop = asyncio.Event()
        self.relay: OutboxRelay | None = None
        self._pool: asyncpg.Pool | None = None
        self._loops: list[Loop] = []
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._exit = AsyncExitStack()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.service}: the database pool is used before start-up")
        return self._pool

    @property
    def subjects(self) -> Subjects:
        return self.settings.subjects

    def with_outbox(self) -> OutboxRelay:
        """Enable the outbox relay for this service (its events follow database writes)."""
        if self.relay is None:
            self.relay = OutboxRelay(self.bus, _LazyPool(self), self.service)  # type: ignore[arg-type]
            self._loops.append(self.relay.run)
        return self.relay

    def loop(self, fn: Loop) -> Loop:
        """Run ``fn(stop)`` in the background while the service is up."""
        self._loops.append(fn)
        return fn

    def on_startup(self, fn: Hook) -> Hook:
        self._startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        self._shutdown_hooks.append(fn)
        return fn

    # -------------------------------------------------------------- in-process use (tests)
    async def open_with(self, pool: asyncpg.Pool) -> None:
        """Run the start-up hooks on a given pool, without connecting to NATS or serving ops:
        for driving the handlers in-process (FastStream's TestNatsBroker)."""
        self._pool = pool
        self.bus.pool = pool
        for hook in self._startup_hooks:
            await hook()

    async def close_opened(self) -> None:
        for hook in self._shutdown_hooks:
            with contextlib.suppress(Exception):
                await hook()
        self._pool = None
        self.bus.pool = None

    async def settle(self) -> None:
        """Wait for the handlers a concurrent consumer runs in the background, then publish
        whatever they left in the outbox."""
        while self.bus._tasks:
            await asyncio.gather(*list(self.bus._tasks), return_exceptions=True)
        if self.relay is not None:
            while await self.relay.flush() > 0:
                pass

    async def _ready(self) -> bool:
        if self._pool is None:
            return False
        try:
            connected = bool(self.bus.broker.config.connection_state.connection.is_connected)
            await self._pool.fetchval("SELECT 1", timeout=2)
        except Exception:
            return False
        return connected

    async def _start(self) -> None:
        s = self.settings
        setup_logging(self.service, fmt=s.log_format, level=s.log_level)
        await ensure_stream(s)
        self._pool = await db.create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max)
        self.bus.pool = self._pool
        if s.ops_port:
            await self._exit.enter_async_context(start_ops_server(s.ops_port, self.service, self._ready))
        for hook in self._startup_hooks:
            await hook()

    async def _after_start(self) -> None:
        self._tasks = [asyncio.create_task(fn(self.stop)) for fn in self._loops]
        log.info(
            "%s started (stream %s, namespace %s, event loop %s, gc threshold %d)",
            self.service,
            self.settings.stream_name,
            self.settings.bus_namespace,
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
            gc.get_threshold()[0],
        )

    async def _shutdown(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for hook in self._shutdown_hooks:
            with contextlib.suppress(Exception):
                await hook()
        await self._exit.aclose()
        if self._pool is not None:
            await self._pool.close()
        log.info("%s stopped", self.service)

    def app(self) -> FastStream:
        return FastStream(
            self.bus.broker,
            logger=logging.getLogger("faststream.app"),
            specification=AsyncAPI(
                title=f"rebalancer {self.service}", version=VERSION, description=self.description
            ),
            on_startup=[self._start],
            after_startup=[self._after_start],
            on_shutdown=[self._shutdown],
        )


class _LazyPool:
    """Lets the relay be built before the pool exists (it is created at start-up)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> object:
        return getattr(self._runtime.pool, name)


def run(app: FastStream) -> None:
    """Entry point of ``python -m services.<name>``, on the event loop ``EVENT_LOOP`` names."""
    settings = ServiceSettings()
    prepare_process(settings)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(app.run())


def prepare_process(settings: ServiceSettings) -> None:
    """Once the app is built, before its event loop starts (every service, the API too): time
    the garbage collector for ``/metrics`` and tune it."""
    metrics.time_garbage_collections()
    tune_gc(settings.gc_threshold)


def tune_gc(young_threshold: int) -> None:
    """Collect garbage less often, and never again walk what start-up built.

    Messages become thousands of short-lived objects (models, Decimals, rows), almost all freed by
    reference counting; CPython's defaults still ran a young collection every 700 of them and a
    full one, walking every object of the process, every few seconds: 28 % of the executor's
    and 21 % of the ledger's CPU under load. Start-up's objects (modules, ccxt's classes, the
    app) live as long as the process, so they are frozen out of every later collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])


def _loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop if asked for and installed (not on Windows); None: asyncio's own."""
    if event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
