"""Pure parts of the ccxt adapter: client ids, error sorting, market mapping, URL rewriting."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import ccxt
import ccxt.async_support as ccxt_async
import pytest
from ccxt.base import decimal_to_precision as d2p

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import (
    CcxtExchange,
    SandboxUnsupported,
    UnknownExchange,
    build_ccxt_client,
)
from services.common.exchanges.ccxt_client_ids import (
    client_order_id_for,
    client_order_params,
    is_valid_client_order_id,
)
from services.common.exchanges.ccxt_errors import classify, safe_message
from services.common.exchanges.ccxt_family import family
from services.common.exchanges.ccxt_markets import (
    DECIMAL_PLACES,
    SIGNIFICANT_DIGITS,
    TICK_SIZE,
    balances_from_ccxt,
    market_from_ccxt,
    order_from_ccxt,
    price_from_ticker,
    step_from_precision,
)
from services.common.exchanges.ccxt_urls import iter_api_urls, rewrite_api_urls
from services.common.exchanges.order_lookup import OrderLookup, order_lookup
from services.common.exchanges.single_flight import SingleFlightCache
from services.common.redact import register_secret

# ------------------------------------------------------------------ client order ids


@pytest.mark.parametrize("exchange_id", ["binance", "kraken", "coinbase", "okx", "bybit"])
def test_client_ids_are_deterministic_valid_and_distinct(exchange_id: str):
    seen = set()
    for _ in range(50):
        run = str(uuid.uuid4())
        for leg in range(12):
            cid = client_order_id_for(exchange_id, run, leg)
            assert cid == client_order_id_for(exchange_id, run, leg)
            assert is_valid_client_order_id(exchange_id, cid), cid
            seen.add(cid)
    assert len(seen) == 50 * 12


def test_client_id_formats():
    run = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    assert len(client_order_id_for("binance", run, 0)) <= 36
    assert str(uuid.UUID(client_order_id_for("coinbase", run, 0))) == client_order_id_for("coinbase", run, 0)
    assert len(client_order_id_for("okx", run, 0)) <= 32
    assert client_order_id_for("okx", run, 0).isalnum()
    with pytest.raises(ValueError):
        client_order_id_for("binance", "not-a-uuid", 0)


def test_client_ids_never_change():
    # Orders already on exchanges are found again by these ids: they are pinned, whatever computes them.
    run = "3F1C2D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F"  # any spelling of the run id gives the same ids
    assert client_order_id_for("binance", run, 7) == "rb-dd15cf6883e9546db17c252ed55ededa"
    assert client_order_id_for("kraken", run, 7) == "dd15cf68-83e9-546d-b17c-252ed55ededa"
    assert client_order_id_for("okx", run, 7) == "rbdd15cf6883e9546db17c252ed55ede"
    assert client_order_id_for("paper", run.lower(), 7) == "rbdd15cf6883e9546db17c252ed55ede"


def test_client_id_params_per_exchange():
    assert client_order_params("binance", "x") == {"clientOrderId": "x"}
    assert client_order_params("kraken", "x") == {"clientOrderId": "x"}
    assert client_order_params("coinbase", "x") == {"client_order_id": "x"}
    assert client_order_params("okx", "x") == {"clOrdId": "x"}


def test_regional_entities_are_their_exchanges_family():
    assert [family(e) for e in ("okx", "myokx", "okxus", "bybit", "bybiteu", "bybitid")] == [
        "okx", "okx", "okx", "bybit", "bybit", "bybit"]
    assert [family(e) for e in ("kraken", "binanceus", "paper", "no-such-exchange")] == [
        "kraken", "binanceus", "paper", "no-such-exchange"]
    assert client_order_params("myokx", "x") == {"clOrdId": "x"}
    assert order_lookup("okxus") == order_lookup("okx") and order_lookup("bybiteu") == order_lookup("bybit")
    assert is_valid_client_order_id("myokx", "rb" + "0" * 30) and not is_valid_client_order_id("myokx", "rb-0")


def test_an_order_is_looked_up_by_its_client_id_on_the_exchange_wherever_it_can_be():
    # One order by its id, where the order endpoint takes a client id (Gate and KuCoin find open
    # orders alone that way).
    assert order_lookup("binance").by_id_param == order_lookup("binanceus").by_id_param == "clientOrderId"
    assert order_lookup("okx").by_id_param == "clOrdId" and order_lookup("bitget").by_id_param == "clientOrderId"
    assert (order_lookup("gate").by_id_param, order_lookup("gate").by_id_open_only) == ("clientOrderId", True)
    assert (order_lookup("kucoin").by_id_param, order_lookup("kucoin").by_id_open_only) == ("clientOid", True)
    # Listings the exchange filters by the id; Bybit's closed orders are its filled ones, so its
    # canceled ones too.
    assert order_lookup("kraken").listing_filter_param == "clientOrderId"
    assert order_lookup("bybit").listing_filter_param == "orderLinkId"
    assert order_lookup("bybit").listing_methods({}) == ("fetch_open_orders", "fetch_canceled_and_closed_orders")
    # Every order since the run began, page after page: by cursor, or by numbered pages.
    assert (order_lookup("coinbase").since_listing, order_lookup("coinbase").pages_by) == ("fetch_orders", "cursor")
    assert (order_lookup("gate").since_listing, order_lookup("gate").pages_by) == ("fetch_closed_orders", "until")
    assert order_lookup("kucoin").pages_by == "until"
    # Elsewhere a page of open, then closed orders, matched here.
    generic = order_lookup("htx")
    assert (generic.by_id_param, generic.listing_filter_param, generic.since_listing) == (None, None, None)
    assert generic.listing_methods({"fetchClosedOrders": True}) == ("fetch_open_orders", "fetch_closed_orders")
    assert generic.listing_methods({"fetchClosedOrders": False}) == ("fetch_open_orders", "fetch_orders")


def test_only_a_look_up_that_sees_every_candidate_proves_a_miss():
    # The executor sends a leg of unknown outcome again only where a miss proves the exchange does
    # not have it; a page of the newest orders proves nothing on a busy account, nor does Gate's or
    # KuCoin's look-up by id alone (it finds open orders only), without their listings since a time.
    proven = ("binance", "binanceus", "okx", "myokx", "kraken", "bybit", "bybiteu", "coinbase", "gate", "kucoin",
              "bitget")
    for exchange_id in proven:
        assert order_lookup(exchange_id).proves_absence, exchange_id
    for exchange_id in ("htx", "mexc", "krakenfutures", "no-such-exchange"):
        assert not order_lookup(exchange_id).proves_absence, exchange_id
    assert not OrderLookup(by_id_param="clientOid", by_id_open_only=True).proves_absence


def test_gates_client_id_is_its_whole_text_within_ccxts_28_characters():
    # ccxt refuses a Gate text over 28 characters before it adds "t-", and reads it back with it.
    cid = client_order_id_for("gate", str(uuid.uuid4()), 3)
    assert cid.startswith("t-rb") and len(cid) == 28 and is_valid_client_order_id("gate", cid)
    assert not is_valid_client_order_id("gate", "rb" + "0" * 30)


# ------------------------------------------------------------------ errors


def names(exc_class: type) -> list[str]:
    return [c.__name__ for c in exc_class.__mro__]


@pytest.mark.parametrize(
    ("error", "placing", "expected"),
    [
        (ccxt.RequestTimeout, True, port.OutcomeUnknown),
        (ccxt.NetworkError, True, port.OutcomeUnknown),
        (ccxt.ExchangeNotAvailable, True, port.OutcomeUnknown),
        (ccxt.RequestTimeout, False, port.RetryLater),
        (ccxt.ExchangeNotAvailable, False, port.RetryLater),
        (ccxt.RateLimitExceeded, True, port.RetryLater),
        (ccxt.DDoSProtection, False, port.RetryLater),
        (ccxt.InsufficientFunds, True, port.LegFailed),
        (ccxt.InvalidOrder, True, port.LegFailed),
        (ccxt.BadSymbol, True, port.LegFailed),
        (ccxt.OrderNotFound, True, port.LegFailed),
        (ccxt.AuthenticationError, True, port.KeyRefused),
        (ccxt.PermissionDenied, False, port.KeyRefused),
        (ccxt.AccountSuspended, True, port.RunFailed),
        (ccxt.ExchangeError, True, port.LegFailed),
        (KeyError, True, port.OutcomeUnknown),
    ],
)
def test_classify(error: type, placing: bool, expected: type):
    assert classify(names(error), placing_order=placing) is expected


def test_transport_failure_wrapped_as_exchange_error_is_unknown_on_orders():
    assert classify(names(ccxt.ExchangeError), placing_order=True, transport_failure=True) is port.OutcomeUnknown


def test_safe_message_masks_secrets_and_signatures():
    register_secret("topsecret-9876")
    exc = ccxt.AuthenticationError("binance GET https://h/api/v3/account?timestamp=1&signature=abcdef topsecret-9876")
    message = safe_message("binance", "fetch_balance", exc)
    assert "topsecret-9876" not in message and "abcdef" not in message
    assert message.startswith("binance fetch_balance: AuthenticationError")


# ------------------------------------------------------------------ markets


def test_precision_mode_constants_match_ccxt():
    ours = (TICK_SIZE, DECIMAL_PLACES, SIGNIFICANT_DIGITS)
    assert ours == (d2p.TICK_SIZE, d2p.DECIMAL_PLACES, d2p.SIGNIFICANT_DIGITS)


def test_step_from_precision_per_mode():
    assert step_from_precision(0.001, TICK_SIZE) == Decimal("0.001")
    assert step_from_precision(1e-08, TICK_SIZE) == Decimal("1E-8")
    assert step_from_precision(3, DECIMAL_PLACES) == Decimal("0.001")
    assert step_from_precision(0, DECIMAL_PLACES) == Decimal("1")
    assert step_from_precision(5, SIGNIFICANT_DIGITS) is None
    assert step_from_precision(None, TICK_SIZE) is None


def test_market_from_ccxt():
    market = market_from_ccxt(
        {"symbol": "ETH/USD", "base": "ETH", "quote": "USD", "active": None, "maker": 0.0016, "taker": 0.0026,
         "precision": {"amount": 4, "price": 2},
         "limits": {"amount": {"min": 0.002}, "cost": {"min": 0.5}}},
        DECIMAL_PLACES,
    )
    assert market == port.Market("ETH/USD", "ETH", "USD", Decimal("0.002"), Decimal("0.5"), Decimal("0.0001"),
                                 Decimal("0.01"), Decimal("0.0016"), Decimal("0.0026"), True)


def test_balances_prices_and_orders():
    balances = balances_from_ccxt({"info": {}, "free": {}, "BTC": {"free": 0.1, "used": 0.2, "total": 0.3},
                                   "DOGE": {"free": 0, "total": 0}})
    assert balances == {"BTC": port.Balance(Decimal("0.1"), Decimal("0.3"))}
    assert price_from_ticker({"last": None, "close": None, "bid": 99, "ask": 101}) == Decimal(100)
    assert price_from_ticker({"last": 0}) is None
    result = order_from_ccxt(
        {"id": "7", "status": "closed", "filled": 0.5, "cost": 50.0, "side": "sell",
         "fees": [{"cost": 0.1, "currency": "USD"}, {"cost": 0.05, "currency": "USD"}]},
        client_order_id="c", symbol="X/USD", side="sell", amount=Decimal("0.5"),
    )
    assert (result.status, result.filled, result.average_price, result.fee) == (
        "closed", Decimal("0.5"), Decimal("100"), Decimal("0.15"))
    # Gate names its GT fee ("0") before the fee it charged: the fee is the one charged.
    gate = order_from_ccxt(
        {"id": "8", "status": "closed", "filled": 0.01, "cost": 600.0, "side": "buy",
         "fees": [{"cost": 0.0, "currency": "GT"}, {"cost": 1.2, "currency": "USDT"}]},
        client_order_id="t-c", symbol="BTC/USDT", side="buy", amount=Decimal("0.01"),
    )
    assert (gate.fee, gate.fee_currency) == (Decimal("1.2"), "USDT")


def test_a_bybit_partial_fill_canceled_is_canceled_not_closed():
    # ccxt reports Bybit's PartiallyFilledCanceled as closed; the fills before the cancel stand.
    def bybit(order_status: str) -> port.OrderResult:
        return order_from_ccxt(
            {"id": "9", "status": "closed", "filled": 0.25, "cost": 25.0, "side": "buy",
             "info": {"orderStatus": order_status}},
            client_order_id="c", symbol="X/USDT", side="buy", amount=Decimal("0.5"),
        )

    assert (bybit("PartiallyFilledCanceled").status, bybit("PartiallyFilledCanceled").filled) == (
        "canceled", Decimal("0.25"))
    assert bybit("Filled").status == "closed"


# ------------------------------------------------------------------ URLs, construction


def test_custom_url_replaces_every_api_url_of_every_ccxt_exchange():
    base = "http://127.0.0.1:9"
    failures = []
    clients = []
    for exchange_id in ccxt_async.exchanges:
        try:
            client = build_ccxt_client(exchange_id, None, api_url=base)
        except Exception as exc:  # an exchange ccxt cannot even construct offline
            failures.append(f"{exchange_id}: {exc!r}")
            continue
        clients.append(client)
        urls = iter_api_urls(client.urls["api"])
        assert urls, exchange_id
        bad = [u for u in urls if not u.startswith(base)]
        assert not bad, (exchange_id, bad)
    assert not failures

    async def close_all() -> None:  # together: each close waits a quarter of a second
        await asyncio.gather(*(client.close() for client in clients))

    asyncio.run(close_all())


def test_rewrite_keeps_paths_and_prefixes():
    api = {"public": "https://api.binance.com/api/v3", "nested": {"x": "https://{hostname}/v5"}}
    assert rewrite_api_urls(api, "http://127.0.0.1:1/pre") == {
        "public": "http://127.0.0.1:1/pre/api/v3", "nested": {"x": "http://127.0.0.1:1/pre/v5"}}
    with pytest.raises(ValueError):
        rewrite_api_urls(api, "127.0.0.1:1")


def test_construction_rules():
    with pytest.raises(UnknownExchange):
        build_ccxt_client("no-such-exchange", None)
    with pytest.raises(SandboxUnsupported, match="kraken has no sandbox"):
        build_ccxt_client("kraken", None, sandbox=True)
    client = build_ccxt_client("binance", None, sandbox=True)
    assert "testnet" in client.urls["api"]["public"]
    assert client.enableRateLimit is True
    assert client.options["maxRetriesOnFailure"] == 0
    asyncio.run(client.close())
    exchange = CcxtExchange("kraken", None)
    assert "kraken" in repr(exchange)
    asyncio.run(exchange.close())


# ------------------------------------------------------------------ shared cache


async def test_single_flight_cache_shares_one_load_and_expires():
    now = [0.0]
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=5, clock=lambda: now[0])
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return cache.loads

    waiters = [asyncio.create_task(cache.get(("k", None), load)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 10
    assert cache.loads == 1
    now[0] = 4.9
    assert await cache.get(("k", None), load) == 1
    now[0] = 5.1
    assert await cache.get(("k", None), load) == 2


async def test_single_flight_cache_propagates_errors_and_retries_next_time():
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=5)

    async def failing() -> int:
        await asyncio.sleep(0)
        raise port.RetryLater("down")

    results = await asyncio.gather(*(cache.get(("k", None), failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, port.RetryLater) for r in results)

    async def ok() -> int:
        return 7

    assert await cache.get(("k", None), ok) == 7


async def test_a_cancelled_loader_leaves_its_waiters_to_load_rather_than_cancelling_them():
    cache: SingleFlightCache[int] = SingleFlightCache(ttl=5)
    started = asyncio.Event()

    async def never_answers() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    async def answers() -> int:
        return 7

    loading = asyncio.create_task(cache.get(("k", None), never_answers))
    await started.wait()
    waiting = asyncio.create_task(cache.get(("k", None), answers))
    await asyncio.sleep(0)
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading
    assert await waiting == 7  # loaded through its own loader, not cancelled with the other caller
    assert cache.loads == 2
