"""The paper exchange: the exchange port over simulated state in PostgreSQL.

``PaperExchange(pool, account)`` is one account, like a ccxt instance. Its state (markets, prices,
balances, orders) lives in the shared database (see ``paper_store``), so every process sees the
same truth. Market orders fill at once at the current price, taker fee charged in the quote
currency; limit orders rest, lock their funds as ``used`` and fill at their price when a later
price move crosses them (``random_walk_step``/``set_price``).

Like Binance and Kraken, a client order id is unique only among OPEN orders: a second market order
with the id of a filled one executes again. The exchange does not protect against double trades;
the executor must (look the id up before re-sending).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import asyncpg

from services.common.coalesce import Coalescer
from services.common.exchanges.paper_batch import (
    AccountQuery,
    AccountState,
    Placement,
    Settled,
    StaleMarkets,
    duplicate_client_id,
    insufficient_funds,
    read_accounts,
    settle_in_order,
    write_batch,
)
from services.common.exchanges.paper_config import Fault, FaultCounter, FaultKind, PaperConfig, parse_faults
from services.common.exchanges.paper_limiter import RateLimiter, Sleep, limiter_for_account
from services.common.exchanges.paper_markets import DEFAULT_MARKETS, paper_market, synthetic_asset
from services.common.exchanges.paper_rules import (
    OrderPlan,
    PaperMarket,
    PaperOrderRejected,
    crosses,
    plan_order,
    validate_order,
)
from services.common.exchanges.paper_store import (
    MARKET_COLUMNS,
    ORDER_COLUMNS,
    PaperOrder,
    account_orders,
    count_orders,
    fund_account,
    market_from_row,
    match_open_orders,
    order_from_row,
    random_walk_step,
    run_price_walk,
    seed_markets,
    set_price,
)
from services.common.exchanges.port import (
    Balance,
    ExchangeError,
    LegFailed,
    Market,
    OrderAnswer,
    OrderRequest,
    OrderResult,
    OutcomeUnknown,
    RetryLater,
    RunFailed,
)

__all__ = [
    "DEFAULT_MARKETS",
    "Fault",
    "FaultCounter",
    "FaultKind",
    "PaperConfig",
    "PaperExchange",
    "PaperMarket",
    "PaperOrder",
    "PaperOrderRejected",
    "account_orders",
    "count_orders",
    "fund_account",
    "match_open_orders",
    "paper_market",
    "parse_faults",
    "random_walk_step",
    "run_price_walk",
    "seed_markets",
    "set_price",
    "synthetic_asset",
]

# The database is unreachable or went away: the paper "network" failed.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)
# Rolled back whole by PostgreSQL, so safe to run again.
_ROLLED_BACK_ERRORS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_MAX_ATTEMPTS = 5

# One statement, so one round trip and atomic. Rows are locked in one global order (the market
# row, then the account's balance rows sorted by asset), the same order the price walk uses, so
# concurrent orders queue instead of deadlocking. Then: debit (only if free covers it and no open
# order has this client id), credit the other asset on an immediate fill, record the order. A
# resting limit order also re-checks, under its share lock on the market row, that the price still
# does not cross: a concurrent price walk either sees this order or makes this statement place
# nothing (and the caller re-reads the price).
_PLACE_ORDER_SQL = """
WITH quote AS (
    -- The plan was made from a cached market row: place only if the row is still that version
    -- ($20 = its xmin; any update, price or rule, makes a new one), so the fill is at the
    -- current price. NULL: the caller just read the row (no guard, as before caching).
    SELECT 1 FROM paper_markets WHERE symbol = $3 AND (xmin::text = $20 OR $20 IS NULL)
), market AS (
    SELECT price FROM paper_markets WHERE symbol = $3 AND $17::boolean FOR SHARE
), locked AS (
    -- count(*) forces the market lock first and every balance lock here, not lazily later.
    SELECT asset FROM paper_balances
    WHERE account = $1 AND asset IN ($11, $14) AND (SELECT count(*) FROM market) >= 0
    ORDER BY asset FOR UPDATE
), guard AS (
    SELECT 1 WHERE (SELECT count(*) FROM locked) >= 0
        AND EXISTS (SELECT 1 FROM quote)
        AND NOT EXISTS (
            SELECT 1 FROM paper_orders
            WHERE account = $1 AND client_order_id = $2 AND status = 'open')
        AND (NOT $17::boolean OR EXISTS (
            SELECT 1 FROM market
            WHERE CASE WHEN $4 = 'buy' THEN market.price > $7 ELSE market.price < $7 END))
), debit AS (
    UPDATE paper_balances SET free = free - $12::numeric, used = used + $13::numeric, updated_at = now()
    WHERE account = $1 AND asset = $11 AND free >= $12::numeric AND EXISTS (SELECT 1 FROM guard)
    RETURNING 1
), credit AS (
    INSERT INTO paper_balances (account, asset, free)
    SELECT $1, $14, $15::numeric FROM debit WHERE $15::numeric > 0
    ON CONFLICT (account, asset) DO UPDATE
        SET free = paper_balances.free + EXCLUDED.free, updated_at = now()
), placed AS (
    INSERT INTO paper_orders (account, client_order_id, symbol, side, type, amount, price, status, filled,
                              average_price, cost, fee, fee_currency, reserved_asset, reserved)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $16, $18, $19,
           CASE WHEN $13::numeric > 0 THEN $11 END, $13::numeric
    FROM debit
    RETURNING id
)
SELECT (SELECT id FROM placed) AS id, EXISTS (SELECT 1 FROM quote) AS current
"""

T = TypeVar("T")


@dataclass(frozen=True)
class QuotedMarket:
    """A market row as read, with its row version (xmin) for the placing statement's check."""

    market: PaperMarket
    version: str


# Market rows per pool, shared by every account of the process: orders plan from the cached row
# and the placing statement checks that it is still current, saving a read per order.
# Keyed by id(pool) with the pool kept to tell a reused id apart; closed pools are dropped.
_QUOTES: dict[int, tuple[asyncpg.Pool, dict[str, QuotedMarket]]] = {}


def _quotes_of(pool: asyncpg.Pool) -> dict[str, QuotedMarket]:
    entry = _QUOTES.get(id(pool))
    if entry is None or entry[0] is not pool:
        for key, (other, _) in list(_QUOTES.items()):
            if other.is_closing():
                del _QUOTES[key]
        entry = _QUOTES[id(pool)] = (pool, {})
    return entry[1]


READ_BALANCES = (
    "SELECT account, asset, free, used FROM paper_balances WHERE account = ANY($1::text[]) AND free + used > 0"
)


class BalanceReader:
    """Reads balances for every account that asks within one event-loop turn in one query:
    a pricer valuing a batch of 200 portfolios makes one round trip, not 200; so do the accounts
    settling their order batches together. Each caller still reads state committed after it
    asked (the query runs on the next turn)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._reads = Coalescer(self._read_many)
        self._accounts = Coalescer(partial(read_accounts, pool))

    async def read(self, account: str) -> dict[str, Balance]:
        return await self._reads(account)

    async def read_account(self, query: AccountQuery) -> AccountState:
        """What settling a batch of orders needs of one account (``paper_batch.read_accounts``)."""
        return await self._accounts(query)

    async def _read_many(self, accounts: Sequence[str]) -> list[dict[str, Balance]]:
        rows = await self._pool.fetch(READ_BALANCES, list(dict.fromkeys(accounts)))
        balances: dict[str, dict[str, Balance]] = {account: {} for account in accounts}
        for row in rows:
            balances[row["account"]][row["asset"]] = Balance(free=row["free"], total=row["free"] + row["used"])
        return [dict(balances[account]) for account in accounts]  # each caller its own copy


_READERS: dict[int, tuple[asyncpg.Pool, BalanceReader]] = {}


def balance_reader(pool: asyncpg.Pool) -> BalanceReader:
    """The process's balance reader for ``pool`` (one per pool, shared by every account)."""
    entry = _READERS.get(id(pool))
    if entry is None or entry[0] is not pool:
        for key, (other, _) in list(_READERS.items()):
            if other.is_closing():
                del _READERS[key]
        entry = _READERS[id(pool)] = (pool, BalanceReader(pool))
    return entry[1]


def _cached_quote(pool: asyncpg.Pool, symbol: str) -> QuotedMarket | None:
    entry = _QUOTES.get(id(pool))
    return entry[1].get(symbol) if entry is not None and entry[0] is pool else None


def _forget_quote(pool: asyncpg.Pool, symbol: str) -> None:
    _quotes_of(pool).pop(symbol, None)


class PaperExchange:
    """One account on the paper exchange; implements ``ExchangePort``."""

    exchange_id = "paper"
    places_batches = True  # create_orders is one transaction
    lists_new_orders_at_once = True  # placed and looked up in the same database
    finds_orders_by_client_id = True  # by its primary key
    account_uid: str | None = None  # a paper account is known by its name (account_ref)

    def __init__(
        self,
        pool: asyncpg.Pool,
        account: str,
        *,
        config: PaperConfig | None = None,
        sleep: Sleep = asyncio.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._pool = pool
        self.account = account
        self.config = config if config is not None else PaperConfig()
        self._sleep = sleep
        # Order statements PostgreSQL rolled back (deadlock, serialization) and this instance re-ran.
        self.rolled_back_retries = 0
        rate = self.config.rate_limit_per_second
        # Shared per account in this process, so several instances of one account share the budget.
        self._limiter = limiter or (limiter_for_account(account, rate) if rate else None)

    async def _answer(self, query: Callable[[], Awaitable[T]]) -> T:
        """Wait for a rate-limit slot and the simulated latency, then run a read."""
        await self._arrive()
        try:
            return await query()
        except _CONNECTION_ERRORS as error:
            raise RetryLater(f"paper exchange unreachable: {error!r}") from error

    async def _arrive(self) -> None:
        if self._limiter is not None:
            await self._limiter.wait(self._sleep)
        if self.config.latency_seconds > 0:
            await self._sleep(self.config.latency_seconds)

    async def load_markets(self) -> dict[str, Market]:
        rows = await self._answer(lambda: self._pool.fetch(f"SELECT {MARKET_COLUMNS} FROM paper_markets"))
        return {row["symbol"]: market_from_row(row).market for row in rows}

    async def fetch_balance(self) -> dict[str, Balance]:
        return await self._answer(lambda: balance_reader(self._pool).read(self.account))

    async def fetch_prices(self, symbols: list[str] | None = None) -> dict[str, Decimal]:
        rows = await self._answer(lambda: self._pool.fetch(
            "SELECT symbol, price FROM paper_markets WHERE $1::text[] IS NULL OR symbol = ANY($1::text[])",
            symbols,
        ))
        return {row["symbol"]: row["price"] for row in rows}

    async def create_order(self, request: OrderRequest) -> OrderResult:
        await self._arrive()
        fault = self.config.fault_for(self.config.fault_counter.next_call())
        _raise_pre_execution_fault(fault, request)
        for _attempt in range(_MAX_ATTEMPTS):
            quote = await self._valid_quote(request)
            market = quote.market
            plan = plan_order(market, request)
            order_id, current = await self._place_order(request, plan, quote.version)
            if not current:
                # The market row changed since it was cached (price or rules): plan again.
                _forget_quote(self._pool, request.symbol)
                continue
            if order_id is None:
                # Nothing happened; find out why. A resting order whose price moved is tried again.
                await self._explain_refusal(request, plan)
                continue
            result = _result_from_plan(request, plan, order_id, market)
            if fault is FaultKind.DROP_RESPONSE:
                raise OutcomeUnknown(
                    f"paper fault drop_response: order {request.client_order_id} executed, answer lost"
                )
            return result
        raise RetryLater(f"paper order {request.client_order_id}: price kept moving, not placed")

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[OrderAnswer]:
        """Orders one after another, as ``create_order`` would place them, in one transaction.

        Each order is one call for the rate limit and the fault schedule (numbered like
        ``create_order`` calls); the latency is paid once, like one request to a batch endpoint.
        """
        answers: list[OrderAnswer] = []
        to_place: list[tuple[int, OrderRequest, FaultKind | None]] = []
        for request in requests:
            if self._limiter is not None:
                await self._limiter.wait(self._sleep)
            fault = self.config.fault_for(self.config.fault_counter.next_call())
            try:
                _raise_pre_execution_fault(fault, request)
            except LegFailed as refused:
                answers.append(refused)
                continue
            except ExchangeError as stop:
                answers.append(stop)
                break
            to_place.append((len(answers), request, fault))
            answers.append(OutcomeUnknown("not answered"))  # replaced below
            if fault is FaultKind.DROP_RESPONSE:
                break  # the batch "connection" drops here: nothing after it is sent
        if self.config.latency_seconds > 0:
            await self._sleep(self.config.latency_seconds)
        if not to_place:
            return answers
        try:
            settled = await self._place_batch([request for _, request, _ in to_place])
        except OutcomeUnknown as error:
            # The transaction may have committed: every order in it may exist.
            for index, _, _ in to_place:
                answers[index] = error
            return answers
        except ExchangeError as error:  # nothing was placed: the first order sent is the last answer
            first = to_place[0][0]
            return [*answers[:first], error]
        for (index, request, fault), (outcome, order_id) in zip(to_place, settled, strict=True):
            if isinstance(outcome, Placement):
                assert order_id is not None
                answers[index] = _result_from_plan(request, outcome.plan, int(order_id), outcome.market)
                if fault is FaultKind.DROP_RESPONSE:
                    answers[index] = OutcomeUnknown(
                        f"paper fault drop_response: order {request.client_order_id} executed, answer lost"
                    )
            else:
                answers[index] = outcome
        return answers

    async def _place_batch(self, requests: list[OrderRequest]) -> list[tuple[Settled, str | None]]:
        symbols = sorted({r.symbol for r in requests})
        client_ids = [r.client_order_id for r in requests]
        for attempt in range(_MAX_ATTEMPTS):
            try:
                quotes, from_cache = await self._quotes(symbols, fresh=attempt > 0)
                markets = {symbol: quote.market for symbol, quote in quotes.items()}
                assets = sorted({a for m in markets.values() for a in (m.market.base, m.market.quote)})
                account = await balance_reader(self._pool).read_account(
                    AccountQuery(self.account, assets, client_ids)
                )
            except _CONNECTION_ERRORS as error:
                raise RetryLater(f"paper exchange unreachable: {error!r}") from error
            settled = settle_in_order(markets, account.free, account.open_client_ids, requests)
            placements = [s for s in settled if isinstance(s, Placement)]
            if not placements:
                if from_cache:
                    continue  # refused on cached market rows: judge again on the current ones
                return [(s, None) for s in settled]
            try:
                ids = iter(await write_batch(
                    self._pool, self.account, placements, {s: q.version for s, q in quotes.items()}
                ))
            except (StaleMarkets, asyncpg.CheckViolationError, *_ROLLED_BACK_ERRORS):
                # Nothing was written: a market moved, or the funds settled on are gone.
                self.rolled_back_retries += 1
                continue
            except asyncpg.UniqueViolationError as error:
                # Another order with one of these client ids opened meanwhile; nothing was placed.
                raise RetryLater(f"paper orders conflicted with an open order, not placed: {error}") from error
            except _CONNECTION_ERRORS as error:
                raise OutcomeUnknown(f"paper orders: connection lost while placing: {error!r}") from error
            return [(s, next(ids) if isinstance(s, Placement) else None) for s in settled]
        raise RetryLater("paper orders: kept conflicting with price moves, not placed")

    async def _quotes(self, symbols: list[str], *, fresh: bool) -> tuple[dict[str, QuotedMarket], bool]:
        """Market rows for ``symbols`` (unknown ones left out), from the process cache unless
        ``fresh``; and whether any came from the cache."""
        quotes = {} if fresh else {s: q for s in symbols if (q := _cached_quote(self._pool, s)) is not None}
        missing = [s for s in symbols if s not in quotes]
        if missing:
            quotes.update(await self._read_quotes(missing))
        return quotes, len(missing) < len(symbols)

    async def _valid_quote(self, request: OrderRequest) -> QuotedMarket:
        """The market to plan with: the process's cached row when the order passes its rules,
        otherwise the row read now (a rule or price may have changed since it was cached)."""
        cached = _cached_quote(self._pool, request.symbol)
        if cached is not None:
            try:
                validate_order(cached.market, request)
                return cached
            except PaperOrderRejected:
                pass  # judge by the current row, not the cached one
        quote = await self._read_quote(request.symbol)
        validate_order(quote.market if quote is not None else None, request)
        assert quote is not None
        return quote

    async def _read_quote(self, symbol: str) -> QuotedMarket | None:
        try:
            return (await self._read_quotes([symbol])).get(symbol)
        except _CONNECTION_ERRORS as error:
            raise RetryLater(f"paper exchange unreachable: {error!r}") from error

    async def _read_quotes(self, symbols: list[str]) -> dict[str, QuotedMarket]:
        """The current rows of these markets (unknown ones left out), cached for the process."""
        rows = await self._pool.fetch(
            f"SELECT {MARKET_COLUMNS}, xmin::text AS version FROM paper_markets WHERE symbol = ANY($1::text[])",
            symbols,
        )
        quotes = {row["symbol"]: QuotedMarket(market_from_row(row), row["version"]) for row in rows}
        _quotes_of(self._pool).update(quotes)
        return quotes

    async def _read_market(self, symbol: str) -> PaperMarket | None:
        quote = await self._read_quote(symbol)
        return quote.market if quote is not None else None

    async def _place(self, request: OrderRequest, plan: OrderPlan) -> int | None:
        """Place a plan made from a market row just read (no version check)."""
        order_id, _current = await self._place_order(request, plan, None)
        return order_id

    async def _place_order(
        self, request: OrderRequest, plan: OrderPlan, version: str | None
    ) -> tuple[int | None, bool]:
        """(order id or None when refused, whether the market row was still ``version``)."""
        rests = plan.status == "open"
        args: tuple[Any, ...] = (
            self.account, request.client_order_id, request.symbol, request.side, request.order_type,
            request.amount, request.price if request.order_type == "limit" else None, plan.status,
            plan.filled, plan.average_price, plan.debit_asset, plan.debit, plan.lock,
            plan.credit_asset, plan.credit, plan.cost, rests, plan.fee, plan.fee_currency, version,
        )
        for _attempt in range(_MAX_ATTEMPTS):
            try:
                row = await self._pool.fetchrow(_PLACE_ORDER_SQL, *args)
                assert row is not None  # the statement's final SELECT always yields one row
                return row["id"], row["current"]
            except _ROLLED_BACK_ERRORS:
                self.rolled_back_retries += 1
                continue  # the statement had no effect: run it again
            except asyncpg.UniqueViolationError as error:
                raise duplicate_client_id(request) from error
            except _CONNECTION_ERRORS as error:
                # The statement may have committed before the connection broke.
                raise OutcomeUnknown(
                    f"paper order {request.client_order_id}: connection lost while placing: {error!r}"
                ) from error
        raise RetryLater(f"paper order {request.client_order_id}: kept deadlocking, not placed")

    async def _explain_refusal(self, request: OrderRequest, plan: OrderPlan) -> None:
        """Raise the reason _place placed nothing; return if a resting order should be retried."""
        try:
            row = await self._pool.fetchrow(
                """SELECT (SELECT free FROM paper_balances WHERE account = $1 AND asset = $2) AS free,
                          EXISTS (SELECT 1 FROM paper_orders WHERE account = $1
                                  AND client_order_id = $3 AND status = 'open') AS duplicate,
                          (SELECT price FROM paper_markets WHERE symbol = $4) AS price""",
                self.account, plan.debit_asset, request.client_order_id, request.symbol,
            )
        except _CONNECTION_ERRORS as error:
            raise RetryLater(f"paper exchange unreachable: {error!r}") from error
        if row["duplicate"]:
            raise duplicate_client_id(request)
        if plan.status == "open" and request.price is not None and row["price"] is not None \
                and crosses(request.side, request.price, row["price"]):
            return  # the price moved through the limit: re-plan as an immediate fill
        free = row["free"] if row["free"] is not None else Decimal(0)
        if free < plan.debit:
            raise insufficient_funds(request, plan, free)

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str, *, placed_after: datetime | None = None
    ) -> OrderResult | None:
        row = await self._answer(lambda: self._pool.fetchrow(
            f"""SELECT {ORDER_COLUMNS} FROM paper_orders
                WHERE account = $1 AND client_order_id = $2 AND symbol = $3
                ORDER BY id DESC LIMIT 1""",
            self.account, client_order_id, symbol,
        ))
        return result_from_order(order_from_row(row)) if row is not None else None

    async def cancel_order(self, symbol: str, exchange_order_id: str) -> OrderResult:
        """Cancel an open order and release its locked funds. An order that is no longer open
        (filled meanwhile) is returned as it is, so the caller sees the fill."""
        if not exchange_order_id.isdigit():
            raise PaperOrderRejected("order_not_found", f"no paper order {exchange_order_id!r}")
        order = await self._answer(lambda: self._cancel(symbol, int(exchange_order_id)))
        if order is None:
            raise PaperOrderRejected(
                "order_not_found", f"no paper order {exchange_order_id} on {symbol} for this account"
            )
        return result_from_order(order)

    async def _cancel(self, symbol: str, order_id: int) -> PaperOrder | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""SELECT {ORDER_COLUMNS} FROM paper_orders
                    WHERE id = $1 AND account = $2 AND symbol = $3 FOR UPDATE""",
                order_id, self.account, symbol,
            )
            if row is None:
                return None
            order = order_from_row(row)
            if order.status != "open":
                return order
            canceled = await conn.fetchrow(
                f"""UPDATE paper_orders SET status = 'canceled', reserved = 0, updated_at = now()
                    WHERE id = $1 RETURNING {ORDER_COLUMNS}""",
                order_id,
            )
            if order.reserved > 0 and order.reserved_asset is not None:
                await conn.execute(
                    """UPDATE paper_balances SET free = free + $3, used = used - $3, updated_at = now()
                       WHERE account = $1 AND asset = $2""",
                    self.account, order.reserved_asset, order.reserved,
                )
            return order_from_row(canceled)

    async def close(self) -> None:
        """Nothing to release: the pool belongs to the caller."""


def _raise_pre_execution_fault(fault: FaultKind | None, request: OrderRequest) -> None:
    label = f"paper fault {fault.value if fault else ''} on order {request.client_order_id}"
    if fault is FaultKind.TIMEOUT:
        raise OutcomeUnknown(f"{label}: request timed out (nothing executed)")
    if fault is FaultKind.UNAVAILABLE:
        raise RetryLater(f"{label}: exchange unavailable")
    if fault is FaultKind.REJECT_INSUFFICIENT:
        raise PaperOrderRejected("insufficient_funds", f"{label}: insufficient funds")
    if fault is FaultKind.AUTH:
        raise RunFailed(f"{label}: invalid API key")


def _result_from_plan(
    request: OrderRequest, plan: OrderPlan, order_id: int, market: PaperMarket
) -> OrderResult:
    return OrderResult(
        client_order_id=request.client_order_id,
        exchange_order_id=str(order_id),
        symbol=request.symbol,
        side=request.side,
        status="closed" if plan.status == "closed" else "open",
        amount=request.amount,
        filled=plan.filled,
        average_price=plan.average_price,
        cost=plan.cost,
        fee=plan.fee,
        fee_currency=plan.fee_currency,
        raw={"id": order_id, "type": request.order_type, "price": request.price,
             "market_price": market.price},
    )


def result_from_order(order: PaperOrder) -> OrderResult:
    status = order.status if order.status in ("open", "closed", "canceled") else "rejected"
    return OrderResult(
        client_order_id=order.client_order_id,
        exchange_order_id=str(order.id),
        symbol=order.symbol,
        side="buy" if order.side == "buy" else "sell",
        status=status,  # type: ignore[arg-type]
        amount=order.amount,
        filled=order.filled,
        average_price=order.average_price,
        cost=order.cost,
        fee=order.fee,
        fee_currency=order.fee_currency,
        raw={"id": order.id, "type": order.type, "price": order.price,
             "created_at": order.created_at.isoformat()},
    )
