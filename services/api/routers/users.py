"""Sign-up (a user and its first token) and who-am-I."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, HTTPException

from services.api.accounts import USER_SCOPE, generate_token, token_hash
from services.api.auth import Principal, current_principal
from services.api.context import ApiContext, get_context
from services.api.errors import ERROR_RESPONSES
from services.api.schemas import ErrorBody, MeOut, SignedUp, SignUp

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.post(
    "/users",
    response_model=SignedUp,
    status_code=201,
    responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def sign_up(body: SignUp, ctx: ApiContext = Depends(get_context)) -> SignedUp:
    """Create a user with a user-scope token (shown once). Admin rights come only from the CLI."""
    if not ctx.settings.api_allow_signup:
        raise HTTPException(403, "sign-up is turned off on this server")
    # The new user's id is chosen here so the insert passes RLS as that very user.
    user_id = uuid.uuid4()
    token = generate_token()
    async with ctx.tx(user_id) as conn:
        if await conn.fetchval("SELECT email_taken($1)", body.email):
            raise HTTPException(409, "a user with this email exists")
        await conn.execute(
            "INSERT INTO users (id, email, name) VALUES ($1, $2, $3)", user_id, body.email, body.name
        )
        await conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, label, scopes) VALUES ($1, $2, 'sign-up', $3)",
            user_id,
            token_hash(token),
            [USER_SCOPE],
        )
    return SignedUp(user_id=user_id, email=body.email, token=token)


@router.get("/me", response_model=MeOut, responses=ERROR_RESPONSES)
async def me(who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)) -> MeOut:
    async with ctx.tx(who.user_id) as conn:
        row = await conn.fetchrow("SELECT id, email, name, is_admin FROM users WHERE id = $1", who.user_id)
    if row is None:
        raise HTTPException(404, "user not found")
    return MeOut(
        user_id=row["id"], email=row["email"], name=row["name"], is_admin=row["is_admin"], scopes=sorted(who.scopes)
    )
