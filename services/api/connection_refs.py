"""Names the exchange account of connections made before ``account_ref`` existed (migration 011)
or written without the API (seeds, benchmarks). Runs when the API starts: paper connections in one
statement, exchange connections one by one, since only the API can open their API keys. A
connection to an account another connection already names keeps NULL, is marked as that one's
second connection (``same_account_as``: the pricer refuses its live runs) and is logged: an account
has one connection, so that its one-live-portfolio and one-live-run rules hold."""

from __future__ import annotations

import logging

import asyncpg

from services.common.db import rows_affected
from services.common.exchanges.account_ref import PAPER, exchange_account_ref
from services.common.secrets import CredentialsUnreadable, SecretBox

log = logging.getLogger("services.api")

# The paper exchange trades paper_account, or the connection's id when it has none. Of unnamed
# connections to one account, the oldest takes the name unless a connection already has it.
NAME_PAPER_ACCOUNTS = """
UPDATE exchange_connections c SET account_ref = first.ref
FROM (
    SELECT DISTINCT ON (ref) id, ref
    FROM (SELECT id, created_at, 'paper:' || COALESCE(paper_account, id::text) AS ref
          FROM exchange_connections WHERE exchange_id = 'paper' AND account_ref IS NULL) unnamed
    WHERE NOT EXISTS (SELECT 1 FROM exchange_connections t WHERE t.account_ref = unnamed.ref)
    ORDER BY ref, created_at, id
) first
WHERE c.id = first.id
"""

PAPER_DUPLICATES = """
SELECT c.id, named.id AS named_id FROM exchange_connections c
JOIN exchange_connections named ON named.account_ref = 'paper:' || COALESCE(c.paper_account, c.id::text)
WHERE c.exchange_id = 'paper' AND c.account_ref IS NULL
ORDER BY c.created_at, c.id
"""

UNNAMED_EXCHANGE_CONNECTIONS = """
SELECT id, exchange_id, api_url, sandbox, credentials_enc FROM exchange_connections
WHERE account_ref IS NULL AND exchange_id <> 'paper' AND credentials_enc IS NOT NULL
ORDER BY created_at, id
"""


async def _mark_duplicate(conn: asyncpg.Connection, connection_id: object, exchange_id: str, named_id: object) -> None:
    """The pricer refuses live runs on a connection marked as another's (migration 015)."""
    await conn.execute(
        "UPDATE exchange_connections SET same_account_as = $2 WHERE id = $1 AND same_account_as IS NULL",
        connection_id,
        named_id,
    )
    log.warning(
        "Exchange connection %s trades the same %s account as connection %s: two live portfolios on"
        " them would undo each other's trades, so its live runs are refused; move its portfolios to the"
        " other connection and delete it",
        connection_id, exchange_id, named_id,
    )


async def name_accounts(pool: asyncpg.Pool, box: SecretBox | None) -> int:
    """Set ``account_ref`` where it is missing; returns how many connections were named."""
    async with pool.acquire() as conn:  # as the owner: every user's connections
        try:
            named = rows_affected(await conn.execute(NAME_PAPER_ACCOUNTS))
        except asyncpg.UniqueViolationError:
            named = 0  # a connection made meanwhile took a name; the next start names the rest
        for row in await conn.fetch(PAPER_DUPLICATES):
            await _mark_duplicate(conn, row["id"], PAPER, row["named_id"])
        if box is None:
            return named  # exchange connections are named by a start that has the keys
        for row in await conn.fetch(UNNAMED_EXCHANGE_CONNECTIONS):
            try:
                api_key = box.open(row["credentials_enc"]).api_key
            except CredentialsUnreadable:
                continue  # a key this start does not have; a later one may
            ref = exchange_account_ref(row["exchange_id"], api_key, api_url=row["api_url"], sandbox=row["sandbox"])
            try:
                await conn.execute(
                    "UPDATE exchange_connections SET account_ref = $2 WHERE id = $1 AND account_ref IS NULL",
                    row["id"],
                    ref,
                )
                named += 1
            except asyncpg.UniqueViolationError:
                first = await conn.fetchval("SELECT id FROM exchange_connections WHERE account_ref = $1", ref)
                await _mark_duplicate(conn, row["id"], row["exchange_id"], first)
    return named
