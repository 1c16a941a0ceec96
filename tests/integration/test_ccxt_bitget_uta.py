"""ccxt's real bitget class, through CcxtExchange, against the fake Bitget as a unified trading account (UTA).

Bitget opens new accounts as unified ones. ccxt asks ``GET /api/v3/account/settings`` once per client
(when it loads markets, or at its first private call when it took another client's markets) and,
answered, trades through the v3 endpoints. The fake refuses a unified account's key at the classic v2
spot trading and asset endpoints (40085), as Bitget does, and ``assert_v3_only`` checks that no
request went there; ``GET /api/v2/spot/account/info`` (the account's id, which the adapter reads once)
still answers, Bitget's documents not saying otherwise.

What ccxt (4.5.90) gets wrong on a unified account's spot trading, each shown on the raw ccxt client
(``test_ccxt_...``: when ccxt changes, they fail, and the mend is to be looked at again) and mended
by the adapter (``ccxt_bitget``), each mend proven through CcxtExchange:
- a market buy's ``qty`` is sent as the base amount, which Bitget spends as quote;
- a filled order's average price and cost are read under the classic names: lost;
- the fee, which Bitget states as a positive amount, is negated and given no currency;
- an order Bitget does not have (error 25204) is a bare ExchangeError, not OrderNotFound;
- a settings probe that fails for any reason (a timeout, a 5xx) makes the client classic for good (the
  adapter reads the settings itself, again at the next call after a failure);
- tickers read without symbols are the USDT futures'.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import ccxt.async_support as ccxt_async
import pytest

from services.common.exchanges import ccxt_adapter, port
from services.common.exchanges.ccxt_connection import check_connection
from tests.fakes.bitget import FakeBitget
from tests.fakes.clients import FakeSession, another_client, client_id, fake_session, limit_buy, order
from tests.fakes.server import RecordedRequest

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USDT"
SYMBOL_ID = "BTCUSDT"
SETTINGS = "/api/v3/account/settings"
UTA_PLACE = "/api/v3/trade/place-order"
UTA_CANCEL = "/api/v3/trade/cancel-order"
UTA_ORDER = "/api/v3/trade/order-info"
ACCOUNT_INFO = "/api/v2/spot/account/info"
# The classic endpoints a unified account's key is refused at (40085).
CLASSIC_SPOT = ("/api/v2/spot/trade/", "/api/v2/spot/account/assets")


@pytest.fixture
async def uta() -> AsyncIterator[FakeSession]:
    """A fake Bitget whose account is a unified trading account, and a CcxtExchange for it."""
    async with fake_session("bitget") as session:
        bitget(session).unified = True  # before ccxt's first private call
        yield session


def bitget(session: FakeSession) -> FakeBitget:
    fake = session.fake
    assert isinstance(fake, FakeBitget)
    return fake




def body(request: RecordedRequest) -> dict[str, str]:
    sent = json.loads(request.body)
    assert isinstance(sent, dict)
    return sent


def asked(fake: FakeBitget, path: str, since: int = 0) -> list[RecordedRequest]:
    return [r for r in fake.requests[since:] if r.path == path]


def assert_v3_only(fake: FakeBitget) -> None:
    """No request reached a classic spot trading or asset endpoint, none an unknown path."""
    assert [r.path for r in fake.requests if r.path.startswith(CLASSIC_SPOT)] == []
    assert fake.unknown_paths == []


async def test_markets_load_through_the_v3_instruments_and_balances_are_the_unified_accounts(uta: FakeSession) -> None:
    fake, exchange = bitget(uta), uta.exchange
    markets = await exchange.load_markets()
    assert {SYMBOL, "ETH/USDT", "SOL/USDT"} <= set(markets)
    btc = markets[SYMBOL]
    assert (btc.min_cost, btc.amount_step, btc.price_step) == (Decimal(5), Decimal("1E-8"), Decimal("0.01"))
    # Bitget's spot instruments state no fee rate: ccxt leaves it None, the adapter's default stands.
    assert exchange.client.markets[SYMBOL]["taker"] is None and btc.taker_fee == Decimal("0.001")
    assert exchange.client.options["uta"] is True  # ccxt asked, once, and was answered
    assert len(asked(fake, SETTINGS)) == 1
    categories = [r.query.get("category", "") for r in asked(fake, "/api/v3/market/instruments")]
    assert sorted(categories) == ["COIN-FUTURES", "SPOT", "USDC-FUTURES", "USDT-FUTURES"]

    balances = await exchange.fetch_balance()
    assert balances["BTC"] == port.Balance(free=Decimal("0.5"), total=Decimal("0.5"))
    assert balances["USDT"] == port.Balance(free=Decimal("10000"), total=Decimal("10000"))
    assert len(asked(fake, "/api/v3/account/assets")) == 1
    # The account's id comes from the classic account info, which still answers a unified key.
    assert exchange.account_uid == str(fake.uid)
    assert len(asked(fake, ACCOUNT_INFO)) == 1
    assert_v3_only(fake)


async def test_a_connection_check_passes_and_names_the_unified_account(uta: FakeSession) -> None:
    fake = bitget(uta)
    assert await check_connection(uta.exchange) == fake.named_account() == str(fake.uid)
    assert_v3_only(fake)


async def test_a_market_sell_and_a_resting_limit_order_trade_through_the_v3_endpoints(uta: FakeSession) -> None:
    fake, exchange = bitget(uta), uta.exchange
    sell = order(uta, side="sell", amount="0.01", leg=0)
    sold = await exchange.create_order(sell)
    [stored_sell] = fake.orders_with_client_id(sell.client_order_id)
    assert (stored_sell.status, stored_sell.filled, stored_sell.fee) == ("closed", Decimal("0.01"), Decimal("0.6"))
    assert (sold.exchange_order_id, sold.status, sold.filled, sold.amount) == (
        stored_sell.id, "closed", Decimal("0.01"), Decimal("0.01")
    )

    rest = limit_buy(uta)
    resting = await exchange.create_order(rest)
    assert (resting.status, resting.filled, resting.fee) == ("open", Decimal(0), Decimal(0))
    assert resting.exchange_order_id is not None
    held = await exchange.fetch_balance()  # the resting buy holds its price x size and the fee: 500.5
    assert held["USDT"] == port.Balance(free=Decimal("10599.4") - Decimal("500.5"), total=Decimal("10599.4"))
    canceled = await exchange.cancel_order(SYMBOL, resting.exchange_order_id)
    assert (canceled.status, canceled.filled) == ("canceled", Decimal(0))
    assert canceled.client_order_id == rest.client_order_id
    [stored_rest] = fake.orders_with_client_id(rest.client_order_id)
    assert stored_rest.status == "canceled"
    balances = await exchange.fetch_balance()
    assert balances["USDT"] == port.Balance(free=Decimal("10599.4"), total=Decimal("10599.4"))  # 600 - 0.6 fee
    assert balances["BTC"].total == Decimal("0.49")

    placed = [r for r in fake.requests if r.method == "POST"]
    assert [r.path for r in placed] == [UTA_PLACE, UTA_PLACE, UTA_CANCEL]
    sent_sell, sent_rest, sent_cancel = (body(r) for r in placed)
    assert {k: sent_sell.get(k) for k in ("category", "symbol", "side", "orderType", "qty", "clientOid")} == {
        "category": "SPOT", "symbol": SYMBOL_ID, "side": "sell", "orderType": "market", "qty": "0.01",
        "clientOid": sell.client_order_id,
    }
    assert "price" not in sent_sell
    assert {k: sent_rest.get(k) for k in ("orderType", "qty", "price", "timeInForce", "clientOid")} == {
        "orderType": "limit", "qty": "0.01", "price": "50000", "timeInForce": "gtc", "clientOid": rest.client_order_id,
    }
    assert sent_cancel.get("orderId") == resting.exchange_order_id
    # The v3 create and cancel answer the ids alone: each order is read back by its id.
    reads = [r.query for r in asked(fake, UTA_ORDER)]
    assert reads == [{"orderId": i} for i in (sold.exchange_order_id, resting.exchange_order_id,
                                              resting.exchange_order_id)]
    assert_v3_only(fake)


async def test_ccxt_misreads_a_unified_orders_fill_and_fee(uta: FakeSession) -> None:
    # ccxt's bitget parse_order reads a unified order's fill price and value under the classic names
    # (priceAvg, quoteVolume), not avgPrice and cumExecValue, and negates the fee its feeDetail states
    # as the positive amount charged, giving it the market's settle currency (None on spot).
    client = uta.exchange.client
    await uta.exchange.load_markets()
    request = order(uta, side="sell", amount="0.01")
    placed = await client.create_order(SYMBOL, "market", "sell", 0.01, None, {"clientOid": request.client_order_id})
    read = await client.fetch_order(placed["id"], SYMBOL)
    assert (read["status"], read["filled"], read["average"], read["cost"]) == ("closed", 0.01, None, None)
    assert (read["fee"]["cost"], read["fee"]["currency"]) == (-0.6, None)
    assert (read["info"]["avgPrice"], read["info"]["cumExecValue"]) == ("60000", "600")


async def test_a_filled_orders_average_price_and_cost_are_read(uta: FakeSession) -> None:
    sold = await uta.exchange.create_order(order(uta, side="sell", amount="0.01"))
    assert (sold.status, sold.filled) == ("closed", Decimal("0.01"))
    assert (sold.average_price, sold.cost) == (Decimal("60000"), Decimal("600"))


async def test_a_filled_orders_fee_is_reported_as_charged(uta: FakeSession) -> None:
    request = order(uta, side="sell", amount="0.01")
    sold = await uta.exchange.create_order(request)
    [stored] = bitget(uta).orders_with_client_id(request.client_order_id)
    assert (sold.fee, sold.fee_currency, sold.fee_known) == (stored.fee, "USDT", True)
    # The order states its fee: its trades (whose fee ccxt negates too) are not read.
    assert asked(bitget(uta), "/api/v3/trade/fills") == []


async def test_ccxt_sends_a_unified_market_buys_base_amount_as_the_qty_bitget_spends_as_quote(uta: FakeSession) -> None:
    # ccxt's UTA order request sizes every order by its base amount and drops the price of a market
    # order (createMarketBuyOrderRequiresPrice is not consulted), while Bitget spends a spot market
    # buy's qty as quote: a 0.01 BTC buy is a 0.01 USDT one, refused under the 5 USDT minimum.
    fake, client = bitget(uta), uta.exchange.client
    await uta.exchange.load_markets()
    cid = client_id("bitget")
    with pytest.raises(ccxt_async.ExchangeError, match="25611"):
        await client.create_order(SYMBOL, "market", "buy", 0.01, 60000, {"clientOid": cid})
    [sent] = [body(r) for r in fake.requests if r.path == UTA_PLACE]
    assert (sent["orderType"], sent["side"], sent["qty"]) == ("market", "buy", "0.01")
    assert "price" not in sent
    assert fake.orders_with_client_id(cid) == []


async def test_a_market_buy_sized_by_the_plans_price_fills(uta: FakeSession) -> None:
    fake = bitget(uta)
    buy = order(uta, side="buy", amount="0.01")  # with the plan's price, as the services send it
    bought = await uta.exchange.create_order(buy)
    [sent] = [body(r) for r in fake.requests if r.path == UTA_PLACE]
    assert (sent["orderType"], sent["side"], sent["qty"]) == ("market", "buy", "600")  # 0.01 at 60000
    [stored] = fake.orders_with_client_id(buy.client_order_id)
    assert (stored.cost, stored.filled) == (Decimal(600), Decimal("0.01"))
    assert (bought.status, bought.filled, bought.cost, bought.amount) == (
        "closed", Decimal("0.01"), Decimal("600"), Decimal("0.01")
    )
    assert (bought.fee, bought.fee_currency) == (stored.fee, "BTC")  # Bitget charges a buy in the coin it buys
    assert_v3_only(fake)


async def test_lookup_by_client_id_finds_an_open_and_a_filled_order(uta: FakeSession) -> None:
    fake, exchange = bitget(uta), uta.exchange
    run_began = datetime.now(UTC)
    rest = limit_buy(uta)
    resting = await exchange.create_order(rest)
    done = order(uta, side="sell", amount="0.01", leg=1)
    await exchange.create_order(done)

    before = len(fake.requests)
    active = await exchange.fetch_order_by_client_id(SYMBOL, rest.client_order_id, placed_after=run_began)
    assert active is not None
    assert (active.status, active.exchange_order_id, active.filled) == ("open", resting.exchange_order_id, Decimal(0))
    found = await exchange.fetch_order_by_client_id(SYMBOL, done.client_order_id, placed_after=run_began)
    assert found is not None
    [stored] = fake.orders_with_client_id(done.client_order_id)
    assert (found.status, found.exchange_order_id, found.filled) == ("closed", stored.id, Decimal("0.01"))
    # Bitget's v3 look-up by clientOid finds an order whatever its state: no listing is read.
    assert [(r.path, r.query) for r in fake.requests[before:]] == [
        (UTA_ORDER, {"clientOid": rest.client_order_id}), (UTA_ORDER, {"clientOid": done.client_order_id})
    ]

    assert resting.exchange_order_id is not None
    await exchange.cancel_order(SYMBOL, resting.exchange_order_id)
    canceled = await exchange.fetch_order_by_client_id(SYMBOL, rest.client_order_id, placed_after=run_began)
    assert canceled is not None and (canceled.status, canceled.filled) == ("canceled", Decimal(0))
    assert_v3_only(fake)


async def test_listings_are_newest_first_a_page_at_a_time_and_go_back_by_cursor(uta: FakeSession) -> None:
    fake, exchange, client = bitget(uta), uta.exchange, uta.exchange.client
    fake.listing_page = 2  # the page a listing answers when no limit is sent (Bitget's is 100); ccxt sends none
    sells = [order(uta, side="sell", amount="0.01", leg=leg) for leg in range(3)]
    for request in sells:
        await exchange.create_order(request)
    rests = [limit_buy(uta), limit_buy(uta, price="49000")]
    for request in rests:
        await exchange.create_order(request)
    newest_first = [fake.orders_with_client_id(r.client_order_id)[0].id for r in reversed(sells)]

    first = (await client.privateUtaGetV3TradeHistoryOrders({"category": "SPOT"}))["data"]
    assert [o["orderId"] for o in first["list"]] == newest_first[:2]
    assert first["cursor"] == newest_first[1]
    second = (await client.privateUtaGetV3TradeHistoryOrders({"category": "SPOT", "cursor": first["cursor"]}))["data"]
    assert ([o["orderId"] for o in second["list"]], second["cursor"]) == (newest_first[2:], newest_first[2])
    last = (await client.privateUtaGetV3TradeHistoryOrders({"category": "SPOT", "cursor": second["cursor"]}))["data"]
    assert last == {"list": [], "cursor": ""}
    everything = await client.privateUtaGetV3TradeHistoryOrders({"category": "SPOT", "limit": "500"})
    assert [o["orderId"] for o in everything["data"]["list"]] == newest_first  # 100 at most: all three
    with pytest.raises(ccxt_async.BadRequest, match="400172"):  # the history's category is required
        await client.privateUtaGetV3TradeHistoryOrders()

    # ccxt's listings: the history without a symbol (filtered by ccxt), a cursor passed through.
    closed = await client.fetch_closed_orders(SYMBOL)
    assert sorted(o["id"] for o in closed) == sorted(newest_first[:2])
    older = await client.fetch_closed_orders(SYMBOL, None, None, {"cursor": first["cursor"]})
    assert [(o["id"], o["status"], o["filled"]) for o in older] == [(newest_first[2], "closed", 0.01)]
    assert [r.query for r in asked(fake, "/api/v3/trade/history-orders")][-2:] == [
        {"category": "SPOT"}, {"category": "SPOT", "cursor": first["cursor"]}
    ]
    open_orders = await client.fetch_open_orders(SYMBOL)
    assert sorted((o["clientOrderId"], o["status"], o["price"]) for o in open_orders) == sorted(
        (r.client_order_id, "open", float(r.price or 0)) for r in rests
    )
    assert asked(fake, "/api/v3/trade/unfilled-orders")[-1].query == {"category": "SPOT", "symbol": SYMBOL_ID}
    trades = await client.fetch_my_trades(SYMBOL)
    assert sorted((t["order"], t["amount"], t["price"]) for t in trades) == sorted(
        (i, 0.01, 60000.0) for i in newest_first
    )
    assert_v3_only(fake)


async def test_ccxt_raises_bitgets_25204_for_an_order_it_does_not_have_as_a_bare_exchange_error(
    uta: FakeSession,
) -> None:
    # Bitget's v3 order-info answers an order it does not find with error 25204 (the v2 one answered
    # an empty list, which ccxt raises as OrderNotFound), which ccxt's bitget error map lacks.
    fake, exchange = bitget(uta), uta.exchange
    await exchange.load_markets()
    never_sent = client_id("bitget", 7)
    with pytest.raises(ccxt_async.ExchangeError, match="25204") as raised:
        await exchange.client.fetch_order(never_sent, SYMBOL, {"clientOrderId": never_sent})
    assert not isinstance(raised.value, ccxt_async.OrderNotFound)
    assert [r.query for r in asked(fake, UTA_ORDER)] == [{"clientOid": never_sent}]

    # An order not listed yet (Bitget's index lags) or no longer listed is answered the same way.
    request = order(uta, side="sell", amount="0.01")
    sold = await exchange.create_order(request)
    cid = request.client_order_id
    fake.state.listing_delay = 60  # by its clientOid and in listings: not yet; by its id: found
    with pytest.raises(ccxt_async.ExchangeError, match="25204"):
        await exchange.client.fetch_order(cid, SYMBOL, {"clientOrderId": cid})
    assert (await exchange.client.fetch_order(sold.exchange_order_id, SYMBOL))["status"] == "closed"
    assert await exchange.client.fetch_closed_orders(SYMBOL) == []
    fake.state.listing_delay = 0
    assert (await exchange.client.fetch_order(cid, SYMBOL, {"clientOrderId": cid}))["id"] == sold.exchange_order_id
    fake.state.closed_listed = False  # done orders no longer found, by id either
    with pytest.raises(ccxt_async.ExchangeError, match="25204"):
        await exchange.client.fetch_order(sold.exchange_order_id, SYMBOL)
    assert await exchange.client.fetch_closed_orders(SYMBOL) == []
    assert_v3_only(fake)


@pytest.mark.parametrize("case", ["never sent", "not listed yet", "no longer listed"])
async def test_lookup_by_client_id_says_an_order_bitget_does_not_have_is_not_there(
    uta: FakeSession, case: str
) -> None:
    fake, exchange = bitget(uta), uta.exchange
    run_began = datetime.now(UTC)
    cid = client_id("bitget", 7)
    if case != "never sent":
        request = order(uta, side="sell", amount="0.01")
        await exchange.create_order(request)
        cid = request.client_order_id
    if case == "not listed yet":
        fake.state.listing_delay = 60  # Bitget's order index may lag its matching engine
    if case == "no longer listed":
        fake.state.closed_listed = False
    assert await exchange.fetch_order_by_client_id(SYMBOL, cid, placed_after=run_began) is None
    # Any other error of a look-up is still one: the leg is not taken for absent.
    fake.http_500_next(path=UTA_ORDER)
    with pytest.raises(port.RetryLater):
        await exchange.fetch_order_by_client_id(SYMBOL, cid, placed_after=run_began)


async def test_a_lost_answer_to_a_placement_is_found_by_its_client_id_and_the_order_exists_once(
    uta: FakeSession,
) -> None:
    fake, exchange = bitget(uta), uta.exchange
    await exchange.load_markets()
    run_began = datetime.now(UTC)
    request = order(uta, side="sell", amount="0.01")
    assert fake.order_path == UTA_PLACE
    fake.drop_response_next()  # on the v3 order path: executed, never answered
    with pytest.raises(port.OutcomeUnknown):
        await exchange.create_order(request)
    [stored] = fake.orders_with_client_id(request.client_order_id)
    [sent] = [r for r in fake.requests if r.method == "POST"]
    assert (sent.path, fake.sent_client_order_id(sent)) == (UTA_PLACE, request.client_order_id)

    found = await exchange.fetch_order_by_client_id(SYMBOL, request.client_order_id, placed_after=run_began)
    assert found is not None
    assert (found.exchange_order_id, found.status, found.filled) == (stored.id, "closed", Decimal("0.01"))
    # Sent again all the same, the clientOid is refused: it can be used once.
    with pytest.raises(port.LegFailed, match="25212"):
        await exchange.create_order(request)
    assert len(fake.orders_with_client_id(request.client_order_id)) == 1
    assert_v3_only(fake)


async def test_the_base_class_faults_and_partial_fills_strike_the_v3_endpoints(uta: FakeSession) -> None:
    fake, exchange = bitget(uta), uta.exchange
    await exchange.load_markets()
    refused = order(uta, side="sell", leg=0)
    fake.rate_limit_next(path=fake.order_path)
    with pytest.raises(port.RetryLater):
        await exchange.create_order(refused)
    assert fake.orders_with_client_id(refused.client_order_id) == []

    timed_out = order(uta, side="sell", leg=1)
    fake.timeout_next(path=fake.order_path)
    with pytest.raises(port.OutcomeUnknown):
        await exchange.create_order(timed_out)
    found = await exchange.fetch_order_by_client_id(SYMBOL, timed_out.client_order_id)
    assert found is not None and (found.status, found.filled) == ("closed", Decimal("0.01"))

    fake.partial_fill("0.5")
    half = order(uta, side="sell", leg=2)
    sold = await exchange.create_order(half)  # a market order's unfilled rest is canceled at once
    assert (sold.status, sold.filled) == ("canceled", Decimal("0.005"))
    marketable = port.OrderRequest(SYMBOL, "buy", Decimal("0.01"), client_id("bitget", 3), order_type="limit",
                                   price=Decimal("61000"))
    partly = await exchange.create_order(marketable)  # half fills, the rest rests: partially_filled
    assert (partly.status, partly.filled) == ("open", Decimal("0.005"))
    assert partly.exchange_order_id is not None
    canceled = await exchange.cancel_order(SYMBOL, partly.exchange_order_id)
    assert (canceled.status, canceled.filled) == ("canceled", Decimal("0.005"))
    statuses = [(o.status, o.filled) for o in fake.state.orders]
    assert statuses == [("closed", Decimal("0.01")), ("canceled", Decimal("0.005")), ("canceled", Decimal("0.005"))]
    assert_v3_only(fake)


async def test_a_second_account_on_the_same_exchange_trades_at_the_v3_endpoints(uta: FakeSession) -> None:
    fake = bitget(uta)
    await uta.exchange.load_markets()  # the first account loads (and shares) the markets
    request = order(uta, side="sell", amount="0.01")
    async with another_client(uta) as second:
        placed = await second.create_order(request)
        balances = await second.fetch_balance()
        assert second.client.options["uta"] is True  # it asked for itself, at its first private call
    assert (placed.status, placed.filled) == ("closed", Decimal("0.01"))
    assert balances["BTC"].total == Decimal("0.49")
    assert [r.path for r in fake.requests if r.method == "POST"] == [UTA_PLACE]
    assert len(asked(fake, SETTINGS)) == 2
    assert len(asked(fake, "/api/v3/market/instruments")) == 4  # the markets were loaded once
    assert_v3_only(fake)


async def test_each_account_is_asked_whether_it_is_a_unified_one(uta: FakeSession) -> None:
    # Accounts of one exchange share its markets, not their mode: a classic account whose client
    # takes the markets a unified account's client loaded still trades at the classic endpoints.
    fake = bitget(uta)
    await uta.exchange.load_markets()  # a unified account's client loads (and shares) the markets
    fake.unified = False  # the next account is a classic one
    async with another_client(uta) as classic:
        placed = await classic.create_order(order(uta, side="sell", amount="0.01"))
        assert classic.client.options["uta"] is False
    assert placed.status == "closed"
    assert [r.path for r in fake.requests if r.method == "POST"] == ["/api/v2/spot/trade/place-order"]
    assert len(asked(fake, SETTINGS)) == 2
    assert fake.unknown_paths == []


async def test_the_classic_endpoints_refuse_a_unified_key_and_the_v3_ones_a_classic_key(uta: FakeSession) -> None:
    fake, client = bitget(uta), uta.exchange.client
    await uta.exchange.load_markets()
    with pytest.raises(ccxt_async.PermissionDenied, match="40085"):
        await client.privateSpotGetV2SpotAccountAssets()
    with pytest.raises(ccxt_async.PermissionDenied, match="Classic Account API is not supported"):
        await client.privateSpotPostV2SpotTradePlaceOrder({
            "symbol": SYMBOL_ID, "side": "sell", "orderType": "market", "size": "0.01",
            "clientOid": client_id("bitget"),
        })
    assert fake.state.orders == []
    assert (await client.privateSpotGetV2SpotAccountInfo())["data"]["userId"] == str(fake.uid)

    fake.unified = False
    with pytest.raises(ccxt_async.ExchangeError, match="40084"):
        await client.privateUtaGetV3AccountAssets()
    with pytest.raises(ccxt_async.ExchangeError, match="Unified Account API is not supported"):
        await client.privateUtaGetV3TradeUnfilledOrders({"category": "SPOT"})
    assert fake.unknown_paths == []


@pytest.mark.parametrize("fault", ["timeout", "http_500"])
async def test_a_failed_settings_probe_is_passing_trouble_not_a_classic_account(uta: FakeSession, fault: str) -> None:
    # ccxt's handle_uta_and_params takes any exception of the probe for "not unified" and keeps
    # options["uta"] = False for the client's life: the classic endpoints would refuse the key, and
    # the adapter report a refused key for a passing fault. The adapter reads the settings itself,
    # before ccxt would, and a read that fails is made again at the next call.
    fake, exchange = bitget(uta), uta.exchange
    fake.fail_next(fault, 1, SETTINGS)
    with pytest.raises(port.RetryLater):
        await exchange.load_markets()
    assert exchange.client.options.get("uta") is None and not exchange.client.markets
    balances = await exchange.fetch_balance()  # read again, answered: the v3 endpoints
    assert balances["BTC"] == port.Balance(free=Decimal("0.5"), total=Decimal("0.5"))
    assert exchange.client.options["uta"] is True
    assert len(asked(fake, SETTINGS)) == 2
    assert_v3_only(fake)


async def test_a_unified_account_passes_the_connection_check_and_kucoins_is_refused(uta: FakeSession) -> None:
    # Bitget's unified accounts are traded (ccxt's defects mended); KuCoin's, whose endpoints are not
    # proven here, are still refused before anything is sent.
    await check_connection(uta.exchange)
    assert uta.exchange.client.options["uta"] is True
    assert "bitget" not in ccxt_adapter.REFUSED_ACCOUNT_KINDS
    assert "kucoin" in ccxt_adapter.REFUSED_ACCOUNT_KINDS
    assert_v3_only(bitget(uta))


async def test_a_key_that_may_not_read_the_settings_trades_as_a_classic_account() -> None:
    # A refusal is an answer, not passing trouble: a classic account whose key lacks the permission
    # to read the settings trades (a unified one would be refused at the classic endpoints, 40085).
    async with fake_session("bitget") as session:
        fake = bitget(session)
        fake.settings_forbidden = True
        sold = await session.exchange.create_order(order(session, side="sell", amount="0.01"))
        assert sold.status == "closed" and session.exchange.client.options["uta"] is False
        assert [r.path for r in fake.requests if r.method == "POST"] == ["/api/v2/spot/trade/place-order"]
        assert len(asked(fake, SETTINGS)) == 1
        fake.unified = True  # had it been a unified account: refused, nothing placed
        with pytest.raises(port.KeyRefused, match="40085"):
            await session.exchange.create_order(order(session, side="sell", amount="0.01", leg=1))
        assert len(fake.state.orders) == 1
        assert fake.unknown_paths == []


async def test_a_classic_account_is_read_as_one_and_trades_at_the_classic_endpoints() -> None:
    # The settings read of a classic account is answered 40084: classic, and nothing refused.
    async with fake_session("bitget") as session:
        fake = bitget(session)
        sold = await session.exchange.create_order(order(session, side="sell", amount="0.01"))
        assert sold.status == "closed" and session.exchange.client.options["uta"] is False
        assert [r.path for r in fake.requests if r.method == "POST"] == ["/api/v2/spot/trade/place-order"]
        assert fake.unknown_paths == []


async def test_prices_of_given_symbols_are_the_v3_spot_tickers(uta: FakeSession) -> None:
    fake = bitget(uta)
    prices = await uta.exchange.fetch_prices([SYMBOL, "ETH/USDT"])
    assert prices == {SYMBOL: Decimal(60000), "ETH/USDT": Decimal(3000)}
    assert [r.query for r in asked(fake, "/api/v3/market/tickers")] == [{"category": "SPOT"}]
    assert_v3_only(fake)


async def test_ccxt_reads_all_tickers_of_a_unified_account_as_the_usdt_futures(uta: FakeSession) -> None:
    # ccxt's bitget fetch_tickers without symbols on a unified account asks for category USDT-FUTURES
    # (handle_product_type_and_params takes the linear default subType when no market is given).
    await uta.exchange.load_markets()
    assert await uta.exchange.client.fetch_tickers() == {}
    assert asked(bitget(uta), "/api/v3/market/tickers")[-1].query == {"category": "USDT-FUTURES"}


async def test_all_prices_read_through_a_unified_accounts_client_are_the_spot_ones(uta: FakeSession) -> None:
    # The pricer reads every price of an exchange at once, through an account's own client.
    prices = await uta.exchange.fetch_prices(None)
    assert prices == {SYMBOL: Decimal(60000), "ETH/USDT": Decimal(3000), "SOL/USDT": Decimal(150)}
    assert asked(bitget(uta), "/api/v3/market/tickers")[-1].query == {"category": "SPOT"}
    assert_v3_only(bitget(uta))
