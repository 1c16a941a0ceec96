"""What every route needs: settings, the database pool, the bus, the credentials box."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from fastapi import HTTPException, Request

from services.api.database import user_transaction
from services.api.settings import ApiSettings
from services.common.bus import Bus
from services.common.secrets import SecretBox


@dataclass
class ApiContext:
    settings: ApiSettings
    pool: asyncpg.Pool
    bus: Bus
    secret_box: SecretBox | None  # None: no key configured, connections with keys are refused

    @asynccontextmanager
    async def tx(self, user_id: UUID | None) -> AsyncIterator[asyncpg.Connection]:
        async with user_transaction(self.pool, user_id) as conn:
            yield conn

    def require_secret_box(self) -> SecretBox:
        if self.secret_box is None:
            raise HTTPException(
                503, "the server has no encryption key configured (REBALANCER_SECRET_KEYS): cannot store keys"
            )
        return self.secret_box


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx
