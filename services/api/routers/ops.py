"""``/metrics``, ``/healthz``, ``/readyz`` served by the API itself (it has no separate ops port)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.api.context import ApiContext, get_context

router = APIRouter(tags=["ops"], include_in_schema=False)
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive", "service": "api"}


@router.get("/readyz")
async def readyz(ctx: ApiContext = Depends(get_context)) -> JSONResponse:
    async def check() -> bool:
        await ctx.pool.fetchval("SELECT 1")
        return await ctx.bus.broker.ping(timeout=READY_TIMEOUT_SECONDS)

    try:
        ready = await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        return JSONResponse({"status": "not ready", "reason": type(exc).__name__}, status_code=503)
    if not ready:
        return JSONResponse({"status": "not ready", "reason": "NATS not connected"}, status_code=503)
    return JSONResponse({"status": "ready", "service": "api"})


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
