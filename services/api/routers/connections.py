"""``/api/v1/connections``: exchange accounts. Keys are write-only: sealed at rest, shown masked."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import SecretStr

from contracts.envelope import new_id
from contracts.v1 import AbandonOrders, ConnectionChanged
from services.api.auth import Principal, current_principal
from services.api.context import ApiContext, get_context
from services.api.errors import ERROR_RESPONSES, invalid
from services.api.operations import publish_command
from services.api.repositories import connections as repo
from services.api.schemas import (
    AbandonOrdersAccepted,
    AbandonOrdersIn,
    ConnectionCreate,
    ConnectionCredentials,
    ConnectionEnvelope,
    ConnectionList,
    ConnectionOut,
    ErrorBody,
    UnresolvedOrderList,
    UnresolvedOrderOut,
)
from services.common.exchanges.account_ref import exchange_account_ref, exchange_account_uid_ref, paper_account_ref
from services.common.secrets import Credentials, mask

log = logging.getLogger("services.api.connections")
router = APIRouter(prefix="/api/v1/connections", tags=["connections"], responses=ERROR_RESPONSES)
PAPER = "paper"


@cache
def ccxt_exchange_ids() -> frozenset[str]:
    import ccxt  # heavy: only when a real exchange connection is added

    return frozenset(ccxt.exchanges)


def _not_found(connection_id: UUID) -> HTTPException:
    return HTTPException(404, f"connection {connection_id} not found")


async def _own(conn: asyncpg.Connection, connection_id: UUID) -> dict[str, Any]:
    """The caller's connection (another user's is not visible): 404 if there is none."""
    row = await repo.get_connection(conn, connection_id)
    if row is None:
        raise _not_found(connection_id)
    return row


@router.get("", response_model=ConnectionList)
async def list_connections(
    who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> ConnectionList:
    async with ctx.tx(who.user_id) as conn:
        rows = await repo.list_connections(conn)
    return ConnectionList(connections=[ConnectionOut.model_validate(r) for r in rows])


@router.get("/{connection_id}", response_model=ConnectionEnvelope)
async def get_connection(
    connection_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> ConnectionEnvelope:
    async with ctx.tx(who.user_id) as conn:
        row = await _own(conn, connection_id)
    return ConnectionEnvelope(connection=ConnectionOut.model_validate(row))


def _problems(body: ConnectionCreate) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if body.exchange_id == PAPER:
        if not body.paper_account:
            problems.append(("paperAccount", "a paper connection needs a paperAccount"))
        for field, value in (("apiKey", body.api_key), ("secret", body.secret), ("passphrase", body.passphrase)):
            if value is not None:
                problems.append((field, "the paper exchange takes no keys"))
        return problems
    if body.exchange_id not in ccxt_exchange_ids():
        problems.append(("exchangeId", f"{body.exchange_id!r} is not an exchange ccxt knows (or 'paper')"))
    problems += _key_problems(body.exchange_id, body.api_key, body.secret, body.passphrase)
    if body.paper_account is not None:
        problems.append(("paperAccount", "only the paper exchange takes a paperAccount"))
    return problems


def _key_problems(
    exchange_id: str, api_key: SecretStr | None, secret: SecretStr | None, passphrase: SecretStr | None
) -> list[tuple[str, str]]:
    """A key and a secret are required, and the passphrase where the exchange's keys have one
    (OKX, KuCoin, Bitget, ...): without it every call would be refused (blank is none)."""
    problems = [
        (field, f"an API {name} is required")
        for field, name, value in (("apiKey", "key", api_key), ("secret", "secret", secret))
        if _blank(value)
    ]
    if _blank(passphrase) and needs_passphrase(exchange_id):
        problems.append(("passphrase", f"{exchange_id} API keys have a passphrase: give the one set with this key"))
    return problems


def _blank(value: SecretStr | None) -> bool:
    return value is None or not value.get_secret_value().strip()


@cache
def needs_passphrase(exchange_id: str) -> bool:
    """Whether ccxt needs a passphrase (its ``password``) to sign ``exchange_id``'s calls."""
    import ccxt

    exchange_class = getattr(ccxt, exchange_id, None)
    return exchange_class is not None and bool(exchange_class().requiredCredentials.get("password"))


def _credentials(api_key: SecretStr, secret: SecretStr, passphrase: SecretStr | None) -> Credentials:
    return Credentials(
        api_key=api_key.get_secret_value().strip(),
        secret=secret.get_secret_value().strip(),
        passphrase=passphrase.get_secret_value() if passphrase else None,
    )


async def _verified_account(
    ctx: ApiContext, exchange_id: str, credentials: Credentials, *, api_url: str | None, sandbox: bool
) -> str | None:
    """Build the client (catches sandbox mode without a test URL) and, unless turned off, check
    that markets load and the keys work; returns the account's name by the exchange's own id of it
    (``account_uid_ref``), where the check learned one."""
    from services.common.exchanges.ccxt_adapter import CcxtExchange, SandboxUnsupported, UnknownExchange
    from services.common.exchanges.ccxt_connection import ConnectionCheckError, check_connection

    try:
        exchange = CcxtExchange(exchange_id, credentials, api_url=api_url, sandbox=sandbox)
    except SandboxUnsupported as exc:
        raise invalid([("sandbox", str(exc))]) from None
    except UnknownExchange as exc:
        raise invalid([("exchangeId", str(exc))]) from None
    try:
        account_uid = await check_connection(exchange) if ctx.settings.api_verify_connections else None
    except ConnectionCheckError as exc:
        field = {"credentials": "apiKey", "unreachable": "apiUrl", "markets": "exchangeId"}[exc.reason]
        raise invalid([(field, str(exc))]) from None
    finally:
        await exchange.close()
    return exchange_account_uid_ref(exchange_id, account_uid, api_url=api_url, sandbox=sandbox) if account_uid else None


@router.post(
    "",
    response_model=ConnectionEnvelope,
    status_code=201,
    responses={409: {"model": ErrorBody, "description": "the account is already connected"}, 503: {"model": ErrorBody}},
)
async def add_connection(
    body: ConnectionCreate, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> ConnectionEnvelope:
    problems = _problems(body)
    if problems:
        raise invalid(problems)
    sealed: bytes | None = None
    key_version: str | None = None
    hint = ""
    account_uid_ref: str | None = None
    if body.exchange_id == PAPER:
        assert body.paper_account is not None
        account_ref, field = paper_account_ref(body.paper_account), "paperAccount"
    else:
        assert body.api_key is not None and body.secret is not None
        box = ctx.require_secret_box()
        credentials = _credentials(body.api_key, body.secret, body.passphrase)
        account_ref, field = (
            exchange_account_ref(body.exchange_id, credentials.api_key, api_url=body.api_url, sandbox=body.sandbox),
            "apiKey",
        )
        account_uid_ref = await _verified_account(
            ctx, body.exchange_id, credentials, api_url=body.api_url, sandbox=body.sandbox
        )
        sealed, key_version = box.seal(credentials)
        hint = mask(credentials.api_key)
    label = body.label or (f"Paper ({body.paper_account})" if body.exchange_id == PAPER else body.exchange_id)
    async with ctx.tx(who.user_id) as conn:
        mine = await repo.connection_to_account(conn, account_ref, account_uid_ref)
        if mine is not None:
            raise _already_connected(field, mine, other_key=mine["account_ref"] != account_ref)
        try:
            row = await repo.insert_connection(
                conn,
                user_id=who.user_id,
                exchange_id=body.exchange_id,
                label=label,
                credentials_enc=sealed,
                key_version=key_version,
                api_key_hint=hint,
                api_url=body.api_url,
                sandbox=body.sandbox,
                paper_account=body.paper_account,
                account_ref=account_ref,
                account_uid_ref=account_uid_ref,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _account_taken(exc, field) from None
    return ConnectionEnvelope(connection=ConnectionOut.model_validate(row))


@router.put(
    "/{connection_id}/credentials",
    response_model=ConnectionEnvelope,
    responses={409: {"model": ErrorBody, "description": "the key's account is already connected"}},
)
async def replace_key(
    connection_id: UUID,
    body: ConnectionCredentials,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> ConnectionEnvelope:
    """Give a connection a new API key of the same account (the old one was revoked, expired or
    rotated). The key is checked like a new connection's; where the exchange names the account
    (Binance's and OKX's uid, Bybit's userID, Coinbase's portfolio), a key of another account is
    refused, since the orders, portfolios and history of the connection are that account's. The
    pricer and executor drop the old key at once, and orders of unknown outcome are then looked up
    with the new one."""
    async with ctx.tx(who.user_id) as conn:
        current = await repo.key_fields(conn, connection_id)
    if current is None:
        raise _not_found(connection_id)
    if current["exchange_id"] == PAPER:
        problems = [("apiKey", "the paper exchange takes no keys")]
    else:
        problems = _key_problems(current["exchange_id"], body.api_key, body.secret, body.passphrase)
    if problems:
        raise invalid(problems)
    box = ctx.require_secret_box()
    credentials = _credentials(body.api_key, body.secret, body.passphrase)
    where = {"api_url": current["api_url"], "sandbox": current["sandbox"]}
    account_uid_ref = await _verified_account(ctx, current["exchange_id"], credentials, **where)
    if account_uid_ref and current["account_uid_ref"] and account_uid_ref != current["account_uid_ref"]:
        raise invalid([(
            "apiKey",
            f"this key is for another {current['exchange_id']} account than the connection's: connect that"
            " account as a connection of its own; a connection's orders, portfolios and history are its account's",
        )])
    sealed, key_version = box.seal(credentials)
    try:
        async with ctx.tx(who.user_id) as conn:
            row = await repo.replace_key(
                conn,
                connection_id,
                credentials_enc=sealed,
                key_version=key_version,
                api_key_hint=mask(credentials.api_key),
                account_ref=exchange_account_ref(current["exchange_id"], credentials.api_key, **where),
                account_uid_ref=account_uid_ref,
            )
    except asyncpg.UniqueViolationError as exc:
        raise _account_taken(exc, "apiKey") from None
    announcement = ConnectionChanged(correlation_id=new_id(), connection_id=str(connection_id))
    try:
        await ctx.bus.announce(ctx.bus.subjects.connection_changed, announcement)
    except Exception as exc:  # the key is saved; a process still holding the old one drops it when refused
        log.warning("could not announce the new key of connection %s: %s", connection_id, type(exc).__name__)
    return ConnectionEnvelope(connection=ConnectionOut.model_validate(row))


def _already_connected(field: str, mine: dict[str, Any] | None, *, other_key: bool = False) -> HTTPException:
    """An account has one connection: the rules that keep it to one live portfolio and one live run
    at a time key on the connection. The caller's own connection to it is named (``mine``); another
    user's is found by the unique index when inserting, and not shown. ``other_key``: the account
    was recognised by the exchange's own id of it, under another API key."""
    if field == "paperAccount":
        what = "paper account"
    elif other_key:
        what = "exchange account (the exchange names it as the account of another API key)"
    else:
        what = "exchange account (this API key at this address)"
    if mine is not None:
        return HTTPException(
            409,
            f"{field}: this {what} is already connected as your connection {mine['id']} ({mine['label']!r});"
            " use that one: an account has one connection, so that it has one live portfolio",
        )
    advice = ", choose another name" if field == "paperAccount" else ""
    return HTTPException(409, f"{field}: this {what} is already connected; an account has one connection{advice}")


def _account_taken(exc: asyncpg.UniqueViolationError, field: str) -> HTTPException:
    """The 409 for a write the one-connection-per-account indexes refused: another user's
    connection to the account, not named. Any other unique violation is raised as it is."""
    if exc.constraint_name not in repo.ONE_CONNECTION_PER_ACCOUNT_INDEXES:
        raise exc
    return _already_connected(field, None, other_key=exc.constraint_name == repo.ONE_CONNECTION_PER_EXCHANGE_ACCOUNT)


def _first_five(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _named(orders: list[dict[str, Any]]) -> str:
    return _first_five([f"{o['side']} {o['symbol']} {o['client_order_id']} (run {o['run_id']})" for o in orders])


def _orders_still_unknown(connection_id: UUID, orders: list[dict[str, Any]]) -> HTTPException:
    """Without the connection's key, an order still being looked up could never be canceled if it
    rests, nor its fill recorded: the connection stays until the reconciler has resolved them, or
    its owner gives them up."""
    return HTTPException(
        409,
        f"{len(orders)} order(s) of unknown outcome on this account are still being looked up: {_named(orders)};"
        " delete the connection once they are resolved (the history shows them as they are found). If the"
        " exchange can never answer for them (the API key was revoked, the account closed), give them up:"
        f" POST /api/v1/connections/{connection_id}/abandon-orders with their clientOrderIds",
    )


@router.get("/{connection_id}/unresolved-orders", response_model=UnresolvedOrderList)
async def list_unresolved_orders(
    connection_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> UnresolvedOrderList:
    """Orders on this connection whose outcome is not known yet, oldest first."""
    async with ctx.tx(who.user_id) as conn:
        await _own(conn, connection_id)
        rows = await repo.unresolved_orders(conn, connection_id)
    return UnresolvedOrderList(orders=[UnresolvedOrderOut.model_validate(r) for r in rows])


@router.post(
    "/{connection_id}/abandon-orders",
    response_model=AbandonOrdersAccepted,
    status_code=202,
    responses={
        409: {"model": ErrorBody, "description": "a named order's run still follows it"},
        503: {"model": ErrorBody},
    },
)
async def abandon_orders(
    connection_id: UUID,
    body: AbandonOrdersIn,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> AbandonOrdersAccepted:
    """Give up on orders of unknown outcome that the exchange can never answer for (the API key was
    revoked, the account closed), so that the connection can be deleted. The executor looks each
    up once more: one the exchange answers for is recorded as it ended (a resting one is canceled);
    the rest are recorded as abandoned, their outcome unknown, in the orders history and in their
    run's errors. Only orders of runs that have ended can be given up."""
    async with ctx.tx(who.user_id) as conn:
        await _own(conn, connection_id)
        unresolved = {o["client_order_id"]: o for o in await repo.unresolved_orders(conn, connection_id)}
    if unknown := [cid for cid in body.client_order_ids if cid not in unresolved]:
        raise invalid([(
            "clientOrderIds",
            f"not an order of unknown outcome on this connection: {_first_five(unknown)}"
            f" (GET /api/v1/connections/{connection_id}/unresolved-orders lists them)",
        )])
    asked = [unresolved[cid] for cid in dict.fromkeys(body.client_order_ids)]
    if running := [o for o in asked if o["run_status"] in (None, "running")]:
        raise HTTPException(
            409,
            f"{len(running)} of these orders belong to runs still following them: {_named(running)};"
            " the run looks them up and records how they end; try again once it has completed",
        )
    message = AbandonOrders(
        correlation_id=new_id(),
        user_id=str(who.user_id),
        connection_id=str(connection_id),
        client_order_ids=[o["client_order_id"] for o in asked],
    )
    await publish_command(ctx, ctx.bus.subjects.orders_abandon, message)
    return AbandonOrdersAccepted(
        message_id=message.message_id, orders=[UnresolvedOrderOut.model_validate(o) for o in asked]
    )


@router.delete(
    "/{connection_id}", status_code=204, response_class=Response, responses={409: {"model": ErrorBody}}
)
async def delete_connection(
    connection_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> Response:
    async with ctx.tx(who.user_id) as conn:
        await _own(conn, connection_id)
        if await repo.connection_in_use(conn, connection_id):
            raise HTTPException(409, "portfolios still use this connection: move or delete them first")
        if unresolved := await repo.unresolved_orders(conn, connection_id):
            raise _orders_still_unknown(connection_id, unresolved)
        await repo.delete_connection(conn, connection_id)
    return Response(status_code=204)
