"""Orders of unknown outcome their owner gives up on (``AbandonOrders``, sent by the API).

A leg whose request may have reached the exchange stays unresolved until the exchange says how it
ended, and its connection cannot be deleted meanwhile (the reconciler needs the key). When the key
was revoked or the account closed, nobody ever will: the owner gives the legs up. Each is looked up
once more first, so an outcome the exchange can still give is recorded, never discarded (a resting
order is canceled, as the reconciler would); a leg the exchange cannot answer for (key refused,
unreachable, not listed) is recorded as abandoned, its outcome unknown, reported to the ledger in
the same statement. Only legs of ended runs, on the command's user's connection, are touched; the
state guard of ``intents.resolve`` keeps a leg the reconciler resolved meanwhile as it found it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from contracts.subjects import Subjects
from contracts.v1 import AbandonOrders
from services.common.bus import OutboxRelay
from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.port import ExchangeError, OrderResult
from services.executor import intents
from services.executor.reconciler import look_up, never_placed, resolve_reported

log = logging.getLogger("services.executor.abandon")


@dataclass
class Abandoned:
    """What one command did, by client order id."""

    abandoned: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)  # found by the last look-up: its state
    kept: dict[str, str] = field(default_factory=dict)  # left unresolved: why


def kept_because(row: Mapping[str, Any]) -> str | None:
    """Why a leg may not be given up yet: its run still follows it (or the ledger has not recorded
    the run, whose fields its report needs). None when it may."""
    if row["started_at"] is None:
        return f"its run {row['run_id']} is not recorded yet"
    if row["run_status"] == "running":
        return f"its run {row['run_id']} is still running"
    return None


async def _last_look(accounts: ExchangeAccounts, row: Mapping[str, Any]) -> tuple[str | None, OrderResult | None, str]:
    """(the exchange's id, the order as found, why it is abandoned if it is)."""
    try:
        exchange_id, lists_at_once, found = await look_up(accounts, row)
    except ExchangeError as exc:
        return None, None, f"the exchange did not answer its last look-up: {exc}"
    if found is None and never_placed(row, lists_at_once):
        return exchange_id, None, ""  # found not placed, as the reconciler would
    if found is None:
        return exchange_id, None, f"{exchange_id} does not list it"
    return exchange_id, found, ""


async def abandon_orders(
    pool: asyncpg.Pool,
    accounts: ExchangeAccounts,
    relay: OutboxRelay,
    subjects: Subjects,
    command: AbandonOrders,
) -> Abandoned:
    done = Abandoned()
    rows = await intents.owned_unresolved(pool, command.client_order_ids, command.connection_id, command.user_id)
    exchange_of_connection: str = (
        await pool.fetchval("SELECT exchange_id FROM exchange_connections WHERE id = $1::uuid", command.connection_id)
        or "the exchange"
    )
    for row in rows:
        cid = row["client_order_id"]
        if (why := kept_because(row)) is not None:
            done.kept[cid] = why
            continue
        exchange_id, found, abandoned = await _last_look(accounts, row)
        if found is not None and found.status == "open":
            done.kept[cid] = "it still rests on the book and could not be canceled"
            continue
        state, resolved = await resolve_reported(
            pool, subjects, row, found, exchange_id=exchange_id or exchange_of_connection, abandoned=abandoned or None
        )
        if not resolved:
            continue  # resolved meanwhile by the reconciler, which reported it
        if state == "abandoned":
            done.abandoned.append(cid)
        else:
            done.resolved[cid] = state
    for cid in command.client_order_ids:
        if cid not in done.kept and cid not in done.resolved and cid not in done.abandoned:
            done.kept[cid] = "not an order of unknown outcome on this connection (any longer)"
    if done.abandoned or done.resolved:
        relay.wake()
    log.warning(
        "abandon: connection %s: %d order(s) abandoned with their outcome unknown %s, %d found by a last"
        " look-up %s, %d kept %s",
        command.connection_id, len(done.abandoned), done.abandoned, len(done.resolved), done.resolved,
        len(done.kept), done.kept,
    )
    return done
