"""Bearer tokens: ``Authorization: Bearer <token>``, looked up by hash through ``auth_token()``."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.accounts import ADMIN_SCOPE, token_hash
from services.api.context import ApiContext, get_context

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


async def current_principal(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ctx: ApiContext = Depends(get_context),
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "missing bearer token", headers=_UNAUTHORIZED_HEADERS)
    async with ctx.tx(None) as conn:
        row = await conn.fetchrow(
            "SELECT user_id, scopes FROM auth_token($1)", token_hash(credentials.credentials)
        )
    if row is None:
        raise HTTPException(401, "invalid or revoked token", headers=_UNAUTHORIZED_HEADERS)
    return Principal(user_id=row["user_id"], scopes=frozenset(row["scopes"]))


async def admin_principal(principal: Principal = Depends(current_principal)) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "this needs a token with the admin scope")
    return principal
