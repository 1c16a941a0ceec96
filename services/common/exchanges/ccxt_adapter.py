"""The exchange port over ccxt: any ccxt exchange id, one instance per account and process.

Safety rules this adapter enforces:
- ccxt's rate limiter is on and its automatic retries are off (a retried order is a double trade);
- a custom base URL replaces every entry of the exchange's URL map, sandbox mode needs a test URL;
- orders carry a client order id the way each exchange wants it, and are looked up by it when the
  outcome of a request is unknown;
- every ccxt error becomes one of the port's error classes, with a message that holds no secret;
- a filled order whose answer leaves the fee out (Binance's look-ups and cancels) gets it from the
  order's trades; when they cannot tell, the fee is marked unknown (``ccxt_fees``), never 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import ccxt.async_support as ccxt_async

from services.common.exchanges import ccxt_bitget, port
from services.common.exchanges.account_ref import account_id_call, account_uid_in_answer, account_uid_in_balance
from services.common.exchanges.ccxt_client_ids import client_order_params
from services.common.exchanges.ccxt_errors import classify, revoked_credentials, safe_message
from services.common.exchanges.ccxt_family import family
from services.common.exchanges.ccxt_fees import (
    FeeNotDerivable,
    fee_from_trades,
    market_currencies,
    needs_fee_from_trades,
    trades_of_order,
    with_fee,
    with_unknown_fee,
)
from services.common.exchanges.ccxt_markets import (
    balances_from_ccxt,
    order_from_ccxt,
    prices_from_tickers,
    spot_markets_from_ccxt,
)
from services.common.exchanges.ccxt_shared_markets import SHARED_MARKETS, Key, SharedMarkets
from services.common.exchanges.ccxt_urls import rewrite_api_urls
from services.common.exchanges.order_lookup import OrderLookup, order_lookup
from services.common.redact import register_secret
from services.common.secrets import Credentials

T = TypeVar("T")
# How far an exchange's clock may run behind ours, when it is asked for orders placed since a time.
CLOCK_SKEW = timedelta(minutes=10)
# Pages of orders a look-up by time reads at most before it says it cannot tell.
MAX_LISTING_PAGES = 50
# The exchanges (by family) where ccxt reads an account's own settings to choose the endpoints it
# calls, and the adapter's method that reads them (answering whether the account is a unified one):
# KuCoin, whether the account trades through the high-frequency endpoints (most do) and whether it
# is unified; Bitget and Gate, whether it is unified. A client given another account's markets
# (``ccxt_shared_markets``) must read them itself, or it takes a high-frequency account for a
# classic one (its balances read as empty, its orders sent where they are refused); and ccxt takes
# any failure of Bitget's or Gate's read (a timeout) for a classic account, for the client's life.
ACCOUNT_SETTINGS_READS = {"kucoin": "_kucoin_is_unified", "bitget": "_bitget_is_unified", "gate": "_gate_is_unified"}
# Account kinds the rebalancer does not trade, by exchange family: ccxt's path for them is wrong
# where money moves (tests/integration/test_ccxt_bitget_uta.py pins each defect against the fake).
# (Bitget's unified accounts are traded, with ccxt's defects mended: ``ccxt_bitget``.)
REFUSED_ACCOUNT_KINDS: dict[str, str] = {
    "kucoin": "unified trading account, which the rebalancer does not trade yet (ccxt trades it at"
    " endpoints of its own, not yet proven)",
}
# Bitget's answer to the unified-account settings read from a classic account.
_BITGET_CLASSIC_ACCOUNT = "40084"
# Orders asked for per page where pages go back in time: within Gate's and KuCoin's maximum (1,000
# and 500). A page may hold fewer while more remain (KuCoin's high-frequency listing ignores the
# size ccxt asks for and answers 20), so a short page alone does not end the look-up.
LISTING_PAGE_SIZE = 100
# The fewest orders such a page holds while more remain (KuCoin's least page size): a page of fewer
# that brings no order not seen before is the listing's end, not a second too full to page past.
SMALLEST_FULL_PAGE = 10
log = logging.getLogger(__name__)


class UnknownExchange(ValueError):
    """The exchange id is not one ccxt knows."""


class SandboxUnsupported(ValueError):
    """Sandbox mode was asked for an exchange that has no test URL in ccxt."""


def _exchange_options(exchange_id: str) -> dict[str, Any]:
    # Binance loads futures and options markets from other hosts by default; we trade spot only.
    if exchange_id.startswith("binance") and exchange_id not in ("binancecoinm", "binanceusdm"):
        return {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False}
    # Coinbase: the balances of the portfolio the key is scoped to, which its orders trade and
    # whose accounts name it (Advanced Trade's accounts, with open orders' holds apart), not ccxt's
    # default of the Coinbase App's wallets (v2), which name no portfolio and count holds as free.
    if exchange_id in ("coinbase", "coinbaseadvanced"):
        return {"fetchBalance": "v3PrivateGetBrokerageAccounts"}
    # Bybit: spot instruments only (ccxt also loads linear, inverse and option ones); spot as the
    # default type (ccxt's is swap, so tickers of no symbol would be the linear ones); and
    # fetch_order by id (GET /v5/order/realtime, which keeps a unified account's last 500 closed
    # orders), which ccxt refuses for unified accounts unless acknowledged: the adapter reads an
    # order back right after placing or canceling it, as Bybit answers both with the ids alone.
    if family(exchange_id) == "bybit":
        return {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot", "fetchOrder": {"acknowledged": True}}
    # OKX: spot instruments only (ccxt also loads futures, swaps and options); one order per POST
    # /api/v5/trade/order (ccxt's default sends it as a one-order batch); a spot market order's
    # ``sz`` in the base currency (tgtCcy=base_ccy, ccxt's default, pinned: as quote_ccy, which
    # OKX assumes for market buys, ccxt would send the amount as the quote currency to spend).
    if family(exchange_id) == "okx":
        return {"fetchMarkets": {"types": ["spot"]}, "createOrder": "privatePostTradeOrder", "tgtCcy": "base_ccy"}
    # Gate, KuCoin, Bitget: spot markets only (ccxt also loads their contracts, from other hosts:
    # several requests more per load, any of which failing fails it).
    if exchange_id in ("gate", "kucoin", "bitget"):
        return {"fetchMarkets": {"types": ["spot"]}}
    return {}


def build_ccxt_client(
    exchange_id: str,
    credentials: Credentials | None,
    *,
    api_url: str | None = None,
    sandbox: bool = False,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
) -> Any:
    """A configured ``ccxt.async_support`` instance (rate limiter on, no automatic retries)."""
    if exchange_id not in ccxt_async.exchanges:
        raise UnknownExchange(f"unknown exchange id {exchange_id!r}: not a ccxt exchange")
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        # Milliseconds between requests; ccxt's per-exchange default unless set (fakes, tests).
        **({"rateLimit": rate_limit_ms} if rate_limit_ms is not None else {}),
        "options": {"maxRetriesOnFailure": 0, **_exchange_options(exchange_id)},
    }
    if credentials is not None:
        register_secret(*credentials.values())
        config.update(credentials.to_ccxt_config())
    client = getattr(ccxt_async, exchange_id)(config)
    if sandbox:
        if not client.urls.get("test"):
            raise SandboxUnsupported(
                f"{exchange_id} has no sandbox/testnet URL in ccxt; give its testnet as a custom API URL"
            )
        client.set_sandbox_mode(True)
    if api_url:
        client.urls["api"] = rewrite_api_urls(client.urls["api"], api_url)
        if client.urls.get("test"):
            client.urls["test"] = rewrite_api_urls(client.urls["test"], api_url)
    return client


# Order flags sent with every order, by exchange family. Kraken charges a sell's fee in the base
# unless told otherwise (its AddOrder oflags: fcib is a sell's default, fciq a buy's): in the quote
# on both sides, a whole holding can be sold (a fee in the base would have to come on top of it) and
# every fee is in the currency the run's figures and the trade history are kept in.
ORDER_OPTIONS: dict[str, dict[str, str]] = {"kraken": {"oflags": "fciq"}}


def order_options(exchange_id: str) -> dict[str, str]:
    return dict(ORDER_OPTIONS.get(family(exchange_id), {}))


def market_buy_spends(options: dict[str, Any]) -> bool:
    """Whether ccxt sizes this exchange's market buys by the quote they spend (amount x price) and
    refuses one given no price (its ``createMarketBuyOrderRequiresPrice``: Coinbase, Gate, Bitget,
    HTX, ...). The plan's price goes with such a buy; without it the buy would never be sent."""
    nested = options.get("createOrder")
    if isinstance(nested, dict) and "createMarketBuyOrderRequiresPrice" in nested:
        return bool(nested["createMarketBuyOrderRequiresPrice"])
    return bool(options.get("createMarketBuyOrderRequiresPrice", False))


def _with_client_id(orders: list[dict[str, Any]], client_order_id: str) -> dict[str, Any] | None:
    """The order of a ccxt listing sent with ``client_order_id``, if the listing holds it."""
    return next((dict(o) for o in orders if o.get("clientOrderId") == client_order_id), None)


def _is_transport_failure(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, (aiohttp.ClientError, OSError, asyncio.TimeoutError))


class CcxtExchange:
    """One account on one ccxt exchange; implements ``port.ExchangePort``."""

    places_batches = False  # spot batch endpoints differ by exchange and most have none
    lists_new_orders_at_once = False  # an exchange's order index may lag its matching engine

    def __init__(
        self,
        exchange_id: str,
        credentials: Credentials | None,
        *,
        api_url: str | None = None,
        sandbox: bool = False,
        timeout_ms: int = 10_000,
        rate_limit_ms: int | None = None,
        shared_markets: SharedMarkets = SHARED_MARKETS,
    ) -> None:
        self.exchange_id = exchange_id
        self.finds_orders_by_client_id = order_lookup(exchange_id).proves_absence
        self.api_url = api_url
        self.sandbox = sandbox
        # The exchange's own id of this account, once a balance answer (Binance, Coinbase) or the
        # one more read of ``ACCOUNT_ID_CALL`` (OKX, Bybit) has named it.
        self.account_uid: str | None = None
        # The ccxt method of the read that names the account (``ACCOUNT_ID_CALL``), while it is
        # still to be asked.
        call = account_id_call(exchange_id)
        self._account_id_read: str | None = call[0] if call is not None else None
        self._shared_markets = shared_markets
        # The read of this account's settings (``ACCOUNT_SETTINGS_READS``), while it is still to be made.
        reader = ACCOUNT_SETTINGS_READS.get(family(exchange_id)) if credentials is not None else None
        self._settings_read: Callable[[], Awaitable[bool]] | None = getattr(self, reader) if reader else None
        self._settings_lock = asyncio.Lock()
        self._client = build_ccxt_client(
            exchange_id,
            credentials,
            api_url=api_url,
            sandbox=sandbox,
            timeout_ms=timeout_ms,
            rate_limit_ms=rate_limit_ms,
        )

    @property
    def client(self) -> Any:
        """The underlying ccxt instance (for advanced use and tests)."""
        return self._client

    def __repr__(self) -> str:
        return f"CcxtExchange({self.exchange_id!r}, api_url={self.api_url!r}, sandbox={self.sandbox})"

    @property
    def _market_key(self) -> Key:
        return (self.exchange_id, self.api_url, self.sandbox)

    async def _ensure_markets(self) -> None:
        """This client's markets, from the process's shared ones (``ccxt_shared_markets``), before
        any call: ccxt would otherwise load its own copy first."""
        if self._settings_read is not None:
            # First: ccxt's own market load then reads no settings (and no unified account's markets).
            async with self._settings_lock:  # every call waits for it: none may go out before it
                if self._settings_read is not None:
                    await self._read_account_settings(self._settings_read)
                    self._settings_read = None
        if not self._client.markets:
            await self._shared_markets.share_into(self._market_key, self._client, self._load_own_markets)

    async def _read_account_settings(self, read: Callable[[], Awaitable[bool]]) -> None:
        """The account's settings that decide the endpoints ccxt calls, read (``read``, from
        ``ACCOUNT_SETTINGS_READS``) as the exchange answers them; a unified account of an exchange in
        ``REFUSED_ACCOUNT_KINDS`` raises ``AccountNotSupported``. Any other failure raises, and the
        read is made again at the next call."""
        if await read() and (refused := REFUSED_ACCOUNT_KINDS.get(family(self.exchange_id))) is not None:
            raise port.AccountNotSupported(f"{self.exchange_id}: this API key opens a {refused}; connect a key of"
                                           " a classic account")

    async def _kucoin_is_unified(self) -> bool:
        """KuCoin: whether the account trades through the high-frequency endpoints, and whether it is
        a unified one (ccxt keeps both, and asks neither again)."""
        client = self._client
        await self._answer_of("load_migration_status", client.load_migration_status)
        return bool(await self._answer_of("is_uta_enabled", client.is_uta_enabled))

    async def _bitget_is_unified(self) -> bool:
        """Bitget: whether the account is unified (ccxt keeps it, and asks no more; its own read would
        take a passing failure for a classic account, for good). Bitget's 40084 says classic; any
        other refusal is taken so too (``_mode_answer``): a unified account's key is then refused at
        the classic endpoints (40085), so nothing trades from a wrong guess."""
        client = self._client
        if client.options.get("uta") is not True:
            answer = await self._mode_answer(
                "account settings", client.privateUtaGetV3AccountSettings, classic_code=_BITGET_CLASSIC_ACCOUNT
            )
            client.options["uta"] = answer is not None
        return client.options["uta"] is True

    async def _gate_is_unified(self) -> bool:
        """Gate: whether the key's account is unified (``/account/detail``'s key mode 2), whose orders,
        look-ups and balances ccxt sends with account=unified. ccxt reads it at every private call
        until it knows, but takes a failed read for a classic account for the client's life: a client
        made after a restart could then look for a unified account's order with account=spot, where
        Gate may not list it, and send it again. The same answer names the account (``ACCOUNT_ID_CALL``)."""
        client = self._client
        if client.options.get("unifiedAccount") is None:
            detail = await self._mode_answer("account detail", client.privateAccountGetDetail)
            if detail is None:
                self._account_id_read = None  # the same read names the account: refused too
            key = detail.get("key") if isinstance(detail, dict) else None
            client.options["unifiedAccount"] = str(key.get("mode") if isinstance(key, dict) else "") == "2"
            if (uid := account_uid_in_answer(self.exchange_id, detail)) is not None:
                self.account_uid, self._account_id_read = uid, None
        return client.options["unifiedAccount"] is True

    async def _mode_answer(
        self, what: str, read: Callable[[], Awaitable[T]], *, classic_code: str | None = None
    ) -> T | None:
        """The answer of a read of the account's mode, or None when the exchange refused it: an
        answer, not passing trouble (a key without the permission to make it, or ``classic_code``,
        the exchange's own word for a classic account), so the account is a classic one, as ccxt
        takes it; a key refused outright fails at the call that follows. Passing trouble raises, and
        the read is made again at the next call."""
        try:
            return await self._answer_of(what, read)
        except (port.RetryLater, port.OutcomeUnknown):
            raise
        except port.ExchangeError as exc:
            if classic_code is None or classic_code not in str(exc):
                log.warning("%s did not say the account's mode; traded as a classic one: %s", self.exchange_id, exc)
            return None

    async def _load_own_markets(self) -> None:
        await self._call("load_markets", self._client.load_markets)

    async def _call(
        self, operation: str, call: Callable[[], Awaitable[T]], *, placing_order: bool = False
    ) -> T:
        if operation != "load_markets":
            await self._ensure_markets()
        return await self._answer_of(operation, call, placing_order=placing_order)

    async def _answer_of(
        self, operation: str, call: Callable[[], Awaitable[T]], *, placing_order: bool = False
    ) -> T:
        """``call``'s answer, or the ``port.ExchangeError`` its failure is (its message masked)."""
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            names = [cls.__name__ for cls in type(exc).__mro__]
            message = safe_message(self.exchange_id, operation, exc)
            if revoked_credentials(names, str(exc)):
                error_class: type[port.ExchangeError] = port.KeyRefused
                message = message.replace("DDoSProtection", "AuthenticationError (the API key was refused)", 1)
            else:
                error_class = classify(names, placing_order=placing_order, transport_failure=_is_transport_failure(exc))
            error = error_class(message)
            error.ccxt_error = type(exc).__name__  # type: ignore[attr-defined]
            # ``from None``: the original message may hold a signed URL; ours is masked.
            raise error from None

    async def load_markets(self, reload: bool = False) -> dict[str, port.Market]:
        """Spot markets: the shared ones, or (``reload``) loaded afresh and shared from now on."""
        if reload:
            await self._call("load_markets", lambda: self._client.load_markets(True))
            self._shared_markets.publish(self._market_key, self._client)
        else:
            await self._ensure_markets()
        return spot_markets_from_ccxt(self._client.markets, self._client.precisionMode)

    async def fetch_balance(self) -> dict[str, port.Balance]:
        balance = await self._call("fetch_balance", self._client.fetch_balance)
        self.account_uid = account_uid_in_balance(self.exchange_id, balance.get("info")) or self.account_uid
        if self._account_id_read is not None and self.account_uid is None:
            await self._ask_account_uid(self._account_id_read)
        return balances_from_ccxt(balance)

    async def _ask_account_uid(self, method: str) -> None:
        """Once per client: the read that names the account where the balance does not. The
        balance stands whatever it answers; only a passing failure has it asked again next time."""
        try:
            answer = await self._call("fetch_account_id", getattr(self._client, method))
        except (port.RetryLater, port.OutcomeUnknown):
            return
        except port.ExchangeError as exc:
            self._account_id_read = None
            log.warning("%s did not name the account; it is known by its API key alone: %s", self.exchange_id, exc)
            return
        self._account_id_read = None
        self.account_uid = account_uid_in_answer(self.exchange_id, answer)

    async def fetch_prices(self, symbols: list[str] | None = None) -> dict[str, Decimal]:
        tickers = await self._call(
            "fetch_tickers", lambda: self._client.fetch_tickers(symbols, self._tickers_params(symbols))
        )
        prices = prices_from_tickers(tickers)
        return prices if symbols is None else {s: p for s, p in prices.items() if s in symbols}

    def _tickers_params(self, symbols: list[str] | None) -> dict[str, Any]:
        """Known once the call's settings read is made: a unified Bitget account's client reads
        tickers without symbols as the futures' unless told to read the spot ones."""
        return dict(ccxt_bitget.SPOT) if symbols is None and self._bitget_unified else {}

    async def create_orders(self, requests: Sequence[port.OrderRequest]) -> list[port.OrderAnswer]:
        """One at a time: spot batch endpoints differ by exchange and most have none."""
        return await port.place_in_order(self.create_order, requests)

    async def create_order(self, request: port.OrderRequest) -> port.OrderResult:
        client = self._client
        # Loading markets is not the order: failures here are ordinary retry-later/leg errors.
        await self._ensure_markets()
        try:
            # Truncates to the market's step; raises when that leaves nothing.
            precise_amount = str(client.amount_to_precision(request.symbol, str(request.amount)))
            price = None
            if request.order_type == "limit":
                if request.price is None:
                    raise ValueError("a limit order needs a price")
                price = float(client.price_to_precision(request.symbol, str(request.price)))
            elif request.side == "buy" and market_buy_spends(client.options):
                if request.reference_price is None:
                    raise ValueError(f"a market buy on {self.exchange_id} is sized by what it spends: it needs a price")
                price = float(client.price_to_precision(request.symbol, str(request.reference_price)))
        except Exception as exc:  # nothing was sent: this leg cannot be placed as asked
            raise port.LegFailed(safe_message(self.exchange_id, "create_order", exc)) from None
        params = client_order_params(self.exchange_id, request.client_order_id) | order_options(self.exchange_id)
        if price is not None and request.order_type == "market" and self._bitget_unified:
            # A market buy that spends (it has its price): ccxt would send its base amount as qty.
            spend = Decimal(precise_amount) * Decimal(str(price))
            params.update(ccxt_bitget.market_buy_params(str(client.cost_to_precision(request.symbol, str(spend)))))
        # ccxt's exchange classes do arithmetic on amounts, so they get floats; a string of at
        # most 15 significant digits survives the float round trip exactly (ccxt formats with str).
        placed = await self._call(
            "create_order",
            lambda: client.create_order(
                request.symbol, request.order_type, request.side, float(precise_amount), price, params
            ),
            placing_order=True,
        )
        placed = self._as_answered(placed)
        result = order_from_ccxt(placed, client_order_id=request.client_order_id, symbol=request.symbol,
                                 side=request.side, amount=Decimal(str(precise_amount)))
        if placed.get("status") is None and result.exchange_order_id is not None:
            # Some exchanges (Kraken) answer an order with its id only: read its state back.
            try:
                refreshed = await self._call(
                    "fetch_order",
                    lambda: client.fetch_order(result.exchange_order_id, request.symbol),
                )
                return await self._order_result(refreshed, request.client_order_id, request.symbol,
                                                request.side, result.amount)
            except port.ExchangeError:
                return result  # the order exists; its state is found later
        return await self._finished(result, placed, request.symbol)

    async def _order_result(
        self, order: dict[str, Any], client_order_id: str, symbol: str, side: port.Side, amount: Decimal
    ) -> port.OrderResult:
        order = self._as_answered(order)
        result = order_from_ccxt(
            order, client_order_id=client_order_id, symbol=symbol, side=side, amount=amount
        )
        return await self._finished(result, order, symbol)

    @property
    def _bitget_unified(self) -> bool:
        return family(self.exchange_id) == "bitget" and ccxt_bitget.is_unified(self._client.options)

    def _as_answered(self, order: dict[str, Any]) -> dict[str, Any]:
        """ccxt's order, with its fill and fee as the exchange stated them where ccxt misreads them."""
        return ccxt_bitget.mended_order(order) if self._bitget_unified else order

    async def _finished(self, result: port.OrderResult, order: dict[str, Any], symbol: str) -> port.OrderResult:
        """The result as the exchange ended the order: a market buy sized by what it spends that
        closed spent it all, so its amount is the base it bought (ccxt derives Gate's as cost /
        average, which the fill, on the market's step, falls short of; on Coinbase the price may
        have moved): it is not a partial fill. And the fee it was charged."""
        closed_spend = result.side == "buy" and result.status == "closed" and order.get("type") == "market"
        if closed_spend and result.filled < result.amount and market_buy_spends(self._client.options):
            result = dataclasses.replace(result, amount=result.filled)
        return await self._with_known_fee(result, order, symbol)

    async def _with_known_fee(
        self, result: port.OrderResult, order: dict[str, Any], symbol: str
    ) -> port.OrderResult:
        """The result with the fee the exchange charged, read from the order's trades when the
        order's own answer left it out; marked unknown (not 0) when the trades cannot say."""
        if not needs_fee_from_trades(result, order):
            return result
        order_id = str(result.exchange_order_id)
        try:
            trades = await self._fetch_order_trades(order_id, symbol)
            base, quote = market_currencies(symbol)
            fee = fee_from_trades(trades_of_order(trades, order_id), filled=result.filled, base=base, quote=quote)
        except (port.ExchangeError, FeeNotDerivable) as exc:
            reason = f"fee not known: {exc}"
            log.warning("%s order %s (%s): %s", self.exchange_id, order_id, result.client_order_id, reason)
            return with_unknown_fee(result, reason)
        return with_fee(result, fee)

    async def _fetch_order_trades(self, order_id: str, symbol: str) -> list[dict[str, Any]]:
        client = self._client
        if client.has.get("fetchOrderTrades"):
            trades: list[dict[str, Any]] = await self._call(
                "fetch_order_trades", lambda: client.fetch_order_trades(order_id, symbol)
            )
            return trades
        if client.has.get("fetchMyTrades"):
            # Recent trades of the market; trades_of_order keeps this order's.
            mine: list[dict[str, Any]] = await self._call(
                "fetch_my_trades", lambda: client.fetch_my_trades(symbol)
            )
            return [t for t in mine if t.get("order") is not None]
        raise FeeNotDerivable(f"{self.exchange_id} offers no trade history through ccxt")

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str, *, placed_after: datetime | None = None
    ) -> port.OrderResult | None:
        found = await self._find_by_client_id(symbol, client_order_id, placed_after)
        if found is None:
            return None
        side = found.get("side")
        return await self._order_result(
            found,
            client_order_id,
            symbol,
            side if side in ("buy", "sell") else "buy",
            Decimal(str(found.get("amount") or 0)),
        )

    async def _find_by_client_id(
        self, symbol: str, client_order_id: str, placed_after: datetime | None
    ) -> dict[str, Any] | None:
        """The order sent with ``client_order_id``, asked of the exchange as ``order_lookup`` says:
        by that id, in listings filtered by it, or among every order since ``placed_after``;
        elsewhere matched in a page of the newest orders (a miss there proves nothing)."""
        client = self._client
        lookup = order_lookup(self.exchange_id)
        if lookup.by_id_param is not None:
            by_id = {lookup.by_id_param: client_order_id}
            try:
                # The client id stands in for the order id too, which ccxt then does not send: its
                # bitget class names the id in its not-found error (None raises a TypeError).
                order: dict[str, Any] = await self._call(
                    "fetch_order", lambda: client.fetch_order(client_order_id, symbol, by_id)
                )
                return order
            except port.ExchangeError as exc:
                bitget_has_none = self._bitget_unified and ccxt_bitget.says_order_not_found(str(exc))
                if getattr(exc, "ccxt_error", None) != "OrderNotFound" and not bitget_has_none:
                    raise
            if not lookup.by_id_open_only:
                return None
        if lookup.since_listing is not None:
            return await self._find_in_orders_since(lookup, symbol, client_order_id, placed_after)
        params = {lookup.listing_filter_param: client_order_id} if lookup.listing_filter_param else {}
        for method in lookup.listing_methods(client.has):
            fetch = getattr(client, method)
            orders: list[dict[str, Any]] = await self._call(
                method, functools.partial(fetch, symbol, None, None, params)
            )
            if (found := _with_client_id(orders, client_order_id)) is not None:
                return found
        return None

    async def _find_in_orders_since(
        self, lookup: OrderLookup, symbol: str, client_order_id: str, placed_after: datetime | None
    ) -> dict[str, Any] | None:
        """The order sent with ``client_order_id`` among every order of ``symbol`` its listing
        (``lookup.since_listing``) holds since ``placed_after`` (less the clocks' possible skew; as
        far back as it goes when None), page after page. Past ``MAX_LISTING_PAGES`` it cannot say,
        and says so: a miss would be sent again."""
        assert lookup.since_listing is not None
        fetch = getattr(self._client, lookup.since_listing)
        # From a whole second: Gate takes seconds, and ccxt drops the orders of a page placed
        # before ``since`` itself, which would make a full page look like the listing's last.
        since = int((placed_after - CLOCK_SKEW).timestamp()) * 1000 if placed_after is not None else None
        by_cursor = lookup.pages_by == "cursor"
        limit = None if by_cursor else LISTING_PAGE_SIZE
        extra = self._listing_params()
        params = dict(extra)
        seen: set[str] = set()
        largest = 0  # the most orders a page has held: the exchange's page size, or more
        for _ in range(MAX_LISTING_PAGES):
            page: list[dict[str, Any]] = await self._call(
                lookup.since_listing, functools.partial(fetch, symbol, since, limit, params)
            )
            if (found := _with_client_id(page, client_order_id)) is not None:
                return found
            listed = {str(o.get("id")) for o in page}
            unseen = listed - seen
            seen |= listed
            if by_cursor:
                if not page:
                    return None
                if not unseen:
                    raise self._listing_stuck(client_order_id)
                # ccxt leaves the next page's cursor in the raw answer of one order of the page.
                cursor = next((str(o["info"]["cursor"]) for o in page if (o.get("info") or {}).get("cursor")), "")
                if not cursor:
                    return None
                params = {"cursor": cursor}
                continue
            if len(page) < largest:
                return None  # a page the exchange did not fill: nothing older remains
            if not unseen:
                # Only the last page's final second again: the end, unless it fills a page.
                if len(page) < SMALLEST_FULL_PAGE:
                    return None
                raise self._listing_stuck(client_order_id)
            largest = len(page)
            # The next page ends where this one did, by creation time, not by number: a numbered
            # page shifts when an order above it leaves the listing (Gate drops canceled orders that
            # never traded), and the order at its top would never be read. The second's overlap
            # reads the page's oldest orders again, which ``seen`` tells apart.
            times = [o.get("timestamp") for o in page]
            if any(not isinstance(t, int) for t in times):
                raise self._listing_stuck(client_order_id)
            params = {**extra, "until": min(t for t in times if isinstance(t, int)) + 1000}
        raise port.RetryLater(
            f"{self.exchange_id}: order {client_order_id} not among more than {MAX_LISTING_PAGES} pages of"
            f" {symbol} orders since its run began; looked up again later"
        )

    def _listing_params(self) -> dict[str, Any]:
        """What a look-up's listing adds to ccxt's request: KuCoin's high-frequency done list reads its
        page size from ``limit`` (20 by default, 100 at most), not the ``pageSize`` ccxt sends."""
        if family(self.exchange_id) == "kucoin" and self._client.options.get("hf") is True:
            return {"limit": LISTING_PAGE_SIZE}
        return {}

    def _listing_stuck(self, client_order_id: str) -> port.RetryLater:
        """A listing that answered no order it had not answered before: it does not page the way
        it was asked (KuCoin's high-frequency accounts page by the last id), or more than a page of
        orders share one second, so the orders past it were never seen."""
        return port.RetryLater(
            f"{self.exchange_id}: its order listing answered the same page twice; order"
            f" {client_order_id} cannot be looked for past it"
        )

    async def cancel_order(self, symbol: str, exchange_order_id: str) -> port.OrderResult:
        client = self._client
        canceled: dict[str, Any] = await self._call(
            "cancel_order", lambda: client.cancel_order(exchange_order_id, symbol)
        )
        if canceled.get("status") is None:
            # Kraken answers a cancel with a count only: read the order back for its fills. If that
            # read fails, the fills are not known: say so rather than report the order unfilled.
            try:
                canceled = await self._call(
                    "fetch_order", lambda: client.fetch_order(exchange_order_id, symbol)
                )
            except port.ExchangeError as exc:
                message = f"order {exchange_order_id} canceled, its fills not read back: {exc}"
                raise port.OutcomeUnknown(message) from None
        side = canceled.get("side")
        return await self._order_result(
            canceled,
            str(canceled.get("clientOrderId") or ""),
            symbol,
            side if side in ("buy", "sell") else "buy",
            Decimal(str(canceled.get("amount") or 0)),
        )

    async def close(self) -> None:
        await self._client.close()

