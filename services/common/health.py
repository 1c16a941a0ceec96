"""The ops endpoints of a service process: ``/metrics``, ``/healthz`` and ``/readyz``.

Every non-API service runs this small aiohttp server on ``OPS_PORT`` beside its broker::

    async with start_ops_server(settings.ops_port, "pricer", ready=broker_and_db_ready):
        await app.run()

- ``/healthz`` (liveness) answers 200 as long as the event loop does: a wedged loop fails the probe
  and the orchestrator restarts the process.
- ``/readyz`` (readiness) answers 200 when ``ready()`` returns true, else 503 with a short JSON
  reason. A check that raises or takes longer than ``READY_TIMEOUT_SECONDS`` counts as not ready.
- ``/metrics`` serves the default registry in Prometheus text format.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from services.common.metrics import set_build_info

ReadyCheck = Callable[[], Awaitable[bool]]
READY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class OpsServer:
    """A running ops server; ``port`` is the bound one (useful when asked for port 0)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _json(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def build_ops_app(
    service: str,
    ready: ReadyCheck | None,
    registry: CollectorRegistry = REGISTRY,
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return _json(200, {"status": "alive", "service": service})

    async def readyz(_: web.Request) -> web.Response:
        if ready is None:
            return _json(200, {"status": "ready", "service": service})
        try:
            is_ready = await asyncio.wait_for(ready(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            return _json(503, {"status": "not ready", "reason": "readiness check timed out"})
        except Exception as exc:  # any failure of a dependency means "not ready", never a 500
            return _json(
                503, {"status": "not ready", "reason": f"readiness check failed: {type(exc).__name__}"}
            )
        if not is_ready:
            return _json(503, {"status": "not ready", "reason": "dependencies not ready"})
        return _json(200, {"status": "ready", "service": service})

    async def metrics(_: web.Request) -> web.Response:
        # Rendering is synchronous (~70 ms for 1,000 portfolios x 4 assets): off the event loop,
        # so a scrape never stalls message handling or the liveness probe.
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        # aiohttp's content_type argument refuses parameters; set the full header instead.
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def start_ops_server(
    port: int,
    service: str,
    ready: ReadyCheck | None = None,
    host: str = "0.0.0.0",
    registry: CollectorRegistry = REGISTRY,
) -> AsyncIterator[OpsServer]:
    """Serve the ops endpoints on ``host:port`` for the duration of the ``async with`` block."""
    set_build_info(service)
    runner = web.AppRunner(build_ops_app(service, ready, registry), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield OpsServer(host=host, port=bound_port)
    finally:
        await runner.cleanup()


def nats_prometheus_middleware(
    service: str, registry: CollectorRegistry = REGISTRY
) -> NatsPrometheusMiddleware:
    """FastStream's bus metrics (``faststream_*``), labelled with the service as ``app_name``.

    Pass it to the broker: ``NatsBroker(url, middlewares=[nats_prometheus_middleware("pricer")])``.
    Several instances on one registry share the same metric objects (FastStream reuses them).
    """
    return NatsPrometheusMiddleware(registry=registry, app_name=service)
