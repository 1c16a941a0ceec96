"""Users and API tokens, for the admin CLI and the stack runner (connect as the owner).

Tokens are random, shown once, and stored only as their sha256 hex digest. Every function takes
an open connection and is idempotent where that makes sense, so the stack runner can call them on
every start::

    from services.api.accounts import ensure_user, create_token
    user_id = await ensure_user(conn, "demo@rebalancer.local", "Demo", is_admin=True)
    token = await create_token(conn, user_id, "demo", ["user", "admin"], token=saved_token)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from uuid import UUID

import asyncpg

TOKEN_PREFIX = "rb_"
USER_SCOPE = "user"
ADMIN_SCOPE = "admin"
KNOWN_SCOPES = frozenset({USER_SCOPE, ADMIN_SCOPE})


def token_hash(token: str) -> str:
    """How ``api_tokens.token_hash`` stores a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def ensure_user(conn: asyncpg.Connection, email: str, name: str, is_admin: bool) -> UUID:
    """The id of the user with this email (case-insensitive), created when missing; an existing
    user's admin flag is raised when ``is_admin`` (never lowered: that is a deliberate act)."""
    row = await conn.fetchrow(
        "INSERT INTO users (email, name, is_admin) VALUES ($1, $2, $3)"
        " ON CONFLICT (lower(email)) DO UPDATE SET is_admin = users.is_admin OR EXCLUDED.is_admin,"
        " updated_at = CASE WHEN EXCLUDED.is_admin AND NOT users.is_admin THEN now()"
        " ELSE users.updated_at END"
        " RETURNING id",
        email.strip(),
        name,
        is_admin,
    )
    assert row is not None
    user_id: UUID = row["id"]
    return user_id


async def find_user(conn: asyncpg.Connection, email: str) -> UUID | None:
    user_id: UUID | None = await conn.fetchval(
        "SELECT id FROM users WHERE lower(email) = lower($1)", email.strip()
    )
    return user_id


async def create_token(
    conn: asyncpg.Connection,
    user_id: UUID,
    label: str,
    scopes: Sequence[str],
    token: str | None = None,
) -> str:
    """Store a token for the user and return it. With ``token`` given (a demo token kept on disk),
    storing it again is a no-op, so re-runs keep one working token."""
    unknown = set(scopes) - KNOWN_SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    plain = token or generate_token()
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, scopes) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (token_hash) DO NOTHING",
        user_id,
        token_hash(plain),
        label,
        list(dict.fromkeys(scopes)) or [USER_SCOPE],
    )
    return plain
