"""Fees of orders whose answer leaves them out (Binance's look-ups and cancels), with ccxt's real
Binance and Kraken classes against the fake servers; the pure fee rules; and, through the whole
pipeline, a trade history that cannot be read neither stalls the run nor invents a fee: the trade
is recorded with no fee currency (the port has no "fee unknown" field the executor could persist).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import ccxt.async_support as ccxt_async
import pytest

from services.common.exchanges import port
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.exchanges.ccxt_fees import (
    FEE_UNKNOWN,
    FeeNotDerivable,
    FeeTotal,
    fee_from_trades,
    fee_unknown_reason,
    market_currencies,
    needs_fee_from_trades,
    reports_fee,
    trades_of_order,
    with_unknown_fee,
)
from tests.fakes.clients import FakeSession, fake_session, order
from tests.fakes.server import RecordedRequest
from tests.support.ccxt_pipeline import (
    ccxt_pipeline,
    fake_exchange,
    run_rebalance,
    seed_ccxt_portfolio,
    use_exchange_clients,
)

MY_TRADES = "/api/v3/myTrades"


# ------------------------------------------------------------------------------ the pure rules
def trade(amount: str, price: str, cost: str | None, currency: str | None = "USDT", **extra: Any) -> dict[str, Any]:
    fee = None if cost is None else {"cost": float(cost), "currency": currency}
    return {"id": extra.pop("id", "1"), "amount": float(amount), "price": float(price), "fee": fee,
            "fees": [fee] if fee else [], **extra}


def result(filled: str = "0.02", exchange_order_id: str | None = "7") -> port.OrderResult:
    return port.OrderResult("cid", exchange_order_id, "BTC/USDT", "buy", "closed", Decimal("0.02"),
                            filled=Decimal(filled))


def test_fees_in_one_currency_are_summed_exactly() -> None:
    trades = [trade("0.01", "60000", "0.6"), trade("0.01", "61000", "0.61", id="2")]
    total = fee_from_trades(trades, filled=Decimal("0.02"), base="BTC", quote="USDT")
    assert total == FeeTotal(Decimal("1.21"), "USDT")


def test_fees_in_the_base_alone_stay_in_the_base() -> None:
    total = fee_from_trades([trade("0.02", "60000", "0.00002", "BTC")], filled=Decimal("0.02"), base="BTC",
                            quote="USDT")
    assert total == FeeTotal(Decimal("0.00002"), "BTC")


def test_base_and_quote_fees_are_combined_in_the_quote_at_each_trades_price() -> None:
    trades = [trade("0.01", "60000", "0.00001", "BTC"), trade("0.01", "61000", "0.61", id="2")]
    total = fee_from_trades(trades, filled=Decimal("0.02"), base="BTC", quote="USDT")
    assert total == FeeTotal(Decimal("0.00001") * 60000 + Decimal("0.61"), "USDT")


def test_a_third_fee_currency_cannot_be_combined_and_says_so() -> None:
    trades = [trade("0.01", "60000", "0.0009", "BNB"), trade("0.01", "60000", "0.6", id="2")]
    with pytest.raises(FeeNotDerivable, match=r"several currencies.*0\.0009 BNB.*0\.6 USDT"):
        fee_from_trades(trades, filled=Decimal("0.02"), base="BTC", quote="USDT")


@pytest.mark.parametrize(
    ("trades", "message"),
    [
        ([], "no trades"),
        ([trade("0.01", "60000", "0.6")], "add up to 0.01, the order filled 0.02"),
        ([trade("0.01", "60000", "0.6"), trade("0.01", "60000", None, id="2")], "trade 2 states no fee"),
        ([trade("0.02", "60000", "0.6", currency=None)], "without its currency"),
    ],
)
def test_incomplete_trade_history_is_not_a_fee(trades: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(FeeNotDerivable, match=message):
        fee_from_trades(trades, filled=Decimal("0.02"), base="BTC", quote="USDT")


def test_a_stated_fee_of_zero_is_reported_but_a_missing_one_is_not() -> None:
    assert reports_fee({"fee": {"cost": 0.0, "currency": "USDT"}, "fees": [{"cost": 0.0, "currency": "USDT"}]})
    assert not reports_fee({"fee": None, "fees": []})
    assert not reports_fee({"fee": {"cost": None, "currency": None}})


def test_only_filled_orders_without_a_stated_fee_need_their_trades() -> None:
    no_fee: dict[str, Any] = {"fee": None, "fees": []}
    assert needs_fee_from_trades(result(), no_fee)
    assert not needs_fee_from_trades(result(filled="0"), no_fee)
    assert not needs_fee_from_trades(result(exchange_order_id=None), no_fee)
    assert not needs_fee_from_trades(result(), {"fee": {"cost": 0.5, "currency": "USDT"}})


def test_market_currencies_of_spot_and_contract_symbols() -> None:
    assert market_currencies("BTC/USDT") == ("BTC", "USDT")
    assert market_currencies("ETH/USDC:USDC") == ("ETH", "USDC")


def test_trades_of_other_orders_are_left_out() -> None:
    mine, other, unnamed = trade("0.01", "1", "1", order="7"), trade("0.01", "1", "1", order="8"), trade("1", "1", "1")
    assert trades_of_order([mine, other, unnamed], "7") == [mine, unnamed]


def test_an_unknown_fee_has_no_currency_and_keeps_its_reason() -> None:
    marked = with_unknown_fee(result(), "fee not known: trades unavailable")
    assert (marked.fee, marked.fee_currency) == (Decimal(0), None)
    assert fee_unknown_reason(marked) == "fee not known: trades unavailable"
    assert marked.raw[FEE_UNKNOWN] == "fee not known: trades unavailable"
    assert fee_unknown_reason(result()) is None


# ------------------------------------------------------------------ the adapter and the fakes
@pytest.fixture(params=["kraken", "binance"])
async def session(request: pytest.FixtureRequest) -> AsyncIterator[FakeSession]:
    async with fake_session(request.param) as running:
        yield running
        assert running.fake.unknown_paths == [], "ccxt called an endpoint the fake does not serve"


@pytest.fixture
async def binance() -> AsyncIterator[FakeSession]:
    async with fake_session("binance") as running:
        yield running
        assert running.fake.unknown_paths == []


def new_order(session: FakeSession, amount: str = "0.02", side: port.Side = "buy") -> port.OrderRequest:
    cid = client_order_id_for(session.exchange_id, str(uuid.uuid4()), 0)
    return port.OrderRequest(session.symbol("BTC"), side, Decimal(amount), cid)


def trade_history_requests(session: FakeSession) -> list[RecordedRequest]:
    return [r for r in session.fake.requests if r.path in (MY_TRADES, "/0/private/TradesHistory",
                                                           "/0/private/QueryTrades")]


def assert_fee_is_the_charged_one(session: FakeSession, found: port.OrderResult) -> None:
    [charged] = session.fake.orders_with_client_id(found.client_order_id)
    assert charged.fee > 0
    # In the coin the order received where the exchange charges so (Binance: a buy's base), else the quote.
    assert charged.fee_currency == ("BTC" if session.fake.fee_in_received else session.quote)
    assert (found.fee, found.fee_currency) == (charged.fee, charged.fee_currency)
    assert fee_unknown_reason(found) is None


async def test_an_order_found_after_a_dropped_response_has_the_fee_charged(session: FakeSession) -> None:
    await session.exchange.load_markets()
    request = new_order(session)
    session.fake.drop_response_next()
    with pytest.raises(port.OutcomeUnknown):
        await session.exchange.create_order(request)
    found = await session.exchange.fetch_order_by_client_id(request.symbol, request.client_order_id)
    assert found is not None and found.filled == Decimal("0.02")
    assert_fee_is_the_charged_one(session, found)
    [charged] = session.fake.orders_with_client_id(request.client_order_id)
    history = trade_history_requests(session)
    if session.exchange_id == "binance":
        # GET /api/v3/order has no commission: one myTrades request, for this order only.
        [asked] = history
        assert asked.query["orderId"] == charged.id and asked.query["symbol"] == "BTCUSDT"
    else:
        assert history == [], "Kraken's order answer carries its fee: no trade history needed"


async def test_a_canceled_partial_fill_has_the_fee_of_all_its_trades(session: FakeSession) -> None:
    session.fake.partial_fill("0.5")
    request = new_order(session, amount="0.04")
    placed = await session.exchange.create_order(request)
    assert placed.status == "open" and placed.exchange_order_id is not None
    [resting] = session.fake.orders_with_client_id(request.client_order_id)
    session.fake.state.prices[request.symbol] = Decimal("61000")
    session.fake.state.fill_more(resting, Decimal("0.01"))  # a second trade, at another price
    canceled = await session.exchange.cancel_order(request.symbol, placed.exchange_order_id)
    assert canceled.status == "canceled" and canceled.filled == Decimal("0.03")
    assert len(resting.fills) == 2
    rate = session.fake.state.fee_rate
    charged = Decimal("0.03") if session.fake.fee_in_received else Decimal("0.02") * 60000 + Decimal("0.01") * 61000
    assert resting.fee == charged * rate
    assert_fee_is_the_charged_one(session, canceled)


async def test_an_order_placed_with_its_fills_needs_no_trade_history(session: FakeSession) -> None:
    placed = await session.exchange.create_order(new_order(session))
    assert_fee_is_the_charged_one(session, placed)
    assert trade_history_requests(session) == []


async def test_an_unfilled_order_needs_no_trade_history(binance: FakeSession) -> None:
    binance.fake.partial_fill("0")  # the order rests on the book untouched
    request = new_order(binance)
    placed = await binance.exchange.create_order(request)
    assert placed.filled == 0 and placed.exchange_order_id is not None
    canceled = await binance.exchange.cancel_order(request.symbol, placed.exchange_order_id)
    assert canceled.status == "canceled" and (canceled.fee, canceled.fee_currency) == (Decimal(0), None)
    assert fee_unknown_reason(canceled) is None
    assert trade_history_requests(binance) == []


async def test_when_the_trades_cannot_be_read_the_order_stands_with_its_fee_unknown(binance: FakeSession) -> None:
    await binance.exchange.load_markets()
    request = new_order(binance)
    binance.fake.drop_response_next()
    with pytest.raises(port.OutcomeUnknown):
        await binance.exchange.create_order(request)
    binance.fake.http_500_next(path=MY_TRADES)
    found = await binance.exchange.fetch_order_by_client_id(request.symbol, request.client_order_id)
    assert found is not None and found.status == "closed" and found.filled == Decimal("0.02")
    assert (found.fee, found.fee_currency) == (Decimal(0), None)
    reason = fee_unknown_reason(found)
    assert reason is not None and "fetch_order_trades" in reason and "ExchangeNotAvailable" in reason
    assert binance.credentials.api_key not in reason and binance.credentials.secret not in reason
    # Once the history answers again, the same look-up has the fee.
    again = await binance.exchange.fetch_order_by_client_id(request.symbol, request.client_order_id)
    assert again is not None
    assert_fee_is_the_charged_one(binance, again)


# ------------------------------------------------------------------ Kraken's fee currency
async def test_kraken_charges_a_sells_fee_in_the_base_unless_told_otherwise() -> None:
    # Kraken's default (AddOrder oflags): a sell's fee in the base (fcib), a buy's in the quote
    # (fciq), and ccxt names the fee's currency by the order's flags. A sell of a whole holding
    # would then need its fee on top, in the coin being sold.
    async with fake_session("kraken") as session:
        client = session.exchange.client
        await session.exchange.load_markets()
        sold = await client.create_order("BTC/USD", "market", "sell", 0.01)
        read = await client.fetch_order(sold["id"], "BTC/USD")
        assert read["fee"]["currency"] == "BTC"
        assert Decimal(str(read["fee"]["cost"])) == Decimal("0.01") * session.fake.state.fee_rate
        with pytest.raises(ccxt_async.InsufficientFunds):
            await client.create_order("BTC/USD", "market", "sell", 0.49)  # the whole rest
        assert len(session.fake.state.orders) == 1


async def test_every_kraken_order_asks_for_its_fee_in_the_quote_so_a_whole_holding_can_be_sold() -> None:
    async with fake_session("kraken") as session:
        whole = await session.exchange.fetch_balance()
        sold = await session.exchange.create_order(order(session, side="sell", amount=str(whole["BTC"].free)))
        assert (sold.status, sold.filled) == ("closed", whole["BTC"].free)
        assert sold.fee_currency == "USD" and sold.fee == sold.cost * session.fake.state.fee_rate
        bought = await session.exchange.create_order(order(session, side="buy", amount="0.01", leg=1))
        assert bought.fee_currency == "USD"
        sent = [r for r in session.fake.requests if r.path.endswith("/AddOrder")]
        assert [dict(parse_qsl(r.body)).get("oflags") for r in sent] == ["fciq", "fciq"]
        assert (await session.exchange.fetch_balance())["BTC"].total == Decimal("0.01")


# -------------------------------------------------------------------------------- the pipeline
async def test_a_trade_history_outage_completes_the_run_with_that_fee_recorded_unknown(
    monkeypatch: pytest.MonkeyPatch, database_url: str, nats_url: str, namespace: str, db_pool: asyncpg.Pool
) -> None:
    box = use_exchange_clients(monkeypatch)
    async with fake_exchange("binance") as fake, ccxt_pipeline(database_url, nats_url, namespace):
        fake.drop_response_next()  # leg 0 (the BTC sell) is found by its client id ...
        fake.http_500_next(100, path=MY_TRADES)  # ... and its trades cannot be read
        seeded = await seed_ccxt_portfolio(db_pool, "binance", fake, box)
        history = await run_rebalance(db_pool, nats_url, namespace, seeded)
    assert history.status == "succeeded", history.run["errors"]
    sell_cid = next(i["client_order_id"] for i in history.intents if i["leg"] == 0)
    trades = {t["client_order_id"]: t for t in history.trades}
    assert len(trades) == 4
    [sold] = fake.orders_with_client_id(sell_cid)
    unknown = trades.pop(sell_cid)
    assert unknown["quantity"] == sold.filled and sold.fee > 0
    assert (unknown["fee"], unknown["fee_currency"]) == (Decimal(0), None), "unknown, not a fee of 0 USDT"
    assert unknown["fee_known"] is False, "history marks the fee unknown"
    assert [e["code"] for e in history.run["errors"]] == ["fee_unknown"]
    for cid, recorded in trades.items():  # the buys were answered with their fills
        [charged] = fake.orders_with_client_id(cid)
        assert (recorded["fee"], recorded["fee_currency"]) == (charged.fee, charged.fee_currency)
        assert charged.fee_currency == recorded["symbol"].partition("/")[0], "Binance charges a buy's base"
        assert recorded["fee_known"] is True
    assert fake.unknown_paths == []
