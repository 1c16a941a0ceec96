"""``python -m services.common.secrets rotate`` re-seals every stored connection in one transaction."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from cryptography.fernet import Fernet

from services.common.db import create_pool
from services.common.secrets import Credentials, SecretBox, key_version


# This test must see no other test's rows: its own database, and a pool on it.
@pytest.fixture
def database_url(own_database_url: str) -> str:
    return own_database_url


@pytest.fixture
async def db_pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(own_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


async def test_rotate_reseals_every_row_with_the_current_key(database_url: str, db_pool: asyncpg.Pool):
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old_box = SecretBox([old_key])
    user_id = uuid.uuid4()
    creds = [Credentials(f"api-key-{i}-0123456789", f"secret-{i}-abcdefgh") for i in range(3)]
    async with db_pool.acquire() as conn:
        await conn.execute("INSERT INTO users (id, email) VALUES ($1, $2)", user_id, f"{user_id}@example.test")
        ids = []
        for c in creds:
            ciphertext, version = old_box.seal(c)
            ids.append(
                await conn.fetchval(
                    "INSERT INTO exchange_connections (user_id, exchange_id, credentials_enc, key_version)"
                    " VALUES ($1, 'kraken', $2, $3) RETURNING id",
                    user_id,
                    ciphertext,
                    version,
                )
            )
        await conn.execute(
            "INSERT INTO exchange_connections (user_id, exchange_id, paper_account) VALUES ($1, 'paper', 'demo')",
            user_id,
        )
    env = {**os.environ, "REBALANCER_SECRET_KEYS": f"{new_key.decode()},{old_key.decode()}"}
    env.pop("REBALANCER_ENV", None)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.common.secrets", "rotate", database_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "re-sealed" in done.stdout
    new_only = SecretBox([new_key])
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, credentials_enc, key_version FROM exchange_connections WHERE id = ANY($1)", ids
        )
        paper = await conn.fetchrow(
            "SELECT credentials_enc, key_version FROM exchange_connections WHERE user_id = $1"
            " AND exchange_id = 'paper'",
            user_id,
        )
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    by_id = {r["id"]: r for r in rows}
    for connection_id, c in zip(ids, creds, strict=True):
        assert by_id[connection_id]["key_version"] == key_version(new_key)
        assert new_only.open(by_id[connection_id]["credentials_enc"]) == c
    assert paper["credentials_enc"] is None and paper["key_version"] is None


async def test_rotate_without_keys_fails_clearly(database_url: str):
    env = {k: v for k, v in os.environ.items() if k not in ("REBALANCER_SECRET_KEYS", "REBALANCER_ENV")}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.common.secrets", "rotate", database_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "REBALANCER_SECRET_KEYS is not set" in done.stderr
