"""The API's wiring: FastAPI app, lifespan (pool, bus, stream), routers, errors, request metrics.

    app = create_app(ApiSettings())              # what ``python -m services.api`` serves
    app = create_app(settings, secret_box=box)   # tests pass their own key
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from services.api.connection_refs import name_accounts
from services.api.context import ApiContext
from services.api.errors import install_error_handlers
from services.api.routers import connections, legacy, ops, portfolios, reports, users
from services.api.settings import ApiSettings
from services.common.bus import Bus, ensure_stream
from services.common.db import create_pool
from services.common.metrics import set_build_info
from services.common.secrets import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "rebalancer_api_requests", "API requests, by route template, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "rebalancer_api_request_duration_seconds", "API request latency, by route template", ["route"]
)


def _secret_box_from_env() -> SecretBox | None:
    try:
        return SecretBox.from_env()
    except SecretKeyError as exc:
        log.warning("exchange keys cannot be stored: %s", exc)
        return None


def create_app(settings: ApiSettings | None = None, *, secret_box: SecretBox | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_build_info("api")
        pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        bus = Bus(settings, "api")
        try:
            await ensure_stream(settings)
            await bus.broker.start()
            box = secret_box or _secret_box_from_env()
            app.state.ctx = ApiContext(settings=settings, pool=pool, bus=bus, secret_box=box)
            await name_accounts(pool, box)
            yield
        finally:
            await bus.broker.stop()
            await pool.close()

    app = FastAPI(
        title="Rebalancer API",
        version="1.0.0",
        description="Portfolios, exchange connections, manual runs, scheduler control and history.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def request_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(template, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(template).observe(time.perf_counter() - started)
        return response

    for module in (legacy, portfolios, reports, connections, users, ops):
        app.include_router(module.router)
    return app
