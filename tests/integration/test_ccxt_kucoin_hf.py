"""ccxt's real kucoin class, through CcxtExchange, against the fake KuCoin in high-frequency (HF) mode.

Most KuCoin accounts are high-frequency ones: ccxt asks ``GET /api/v1/hf/accounts/opened`` once,
when it loads markets, and then reads balances of the ``trade_hf`` account type and trades through
``/api/v1/hf/orders``. The fake serves an HF account's orders there alone (the classic order
endpoints are unknown paths to it), so ``fake.unknown_paths == []`` proves ccxt never left them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.common.exchanges import port
from tests.fakes.clients import (
    FakeSession,
    another_client,
    client_id,
    fake_session,
    limit_buy,
    order,
    pages_of,
    placed_apart,
)
from tests.fakes.kucoin import FakeKucoin

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USDT"
SYMBOL_ID = "BTC-USDT"
HF_ORDERS = "/api/v1/hf/orders"
HF_DONE = "/api/v1/hf/orders/done"


@pytest.fixture
async def hf() -> AsyncIterator[FakeSession]:
    """A fake KuCoin whose account is a high-frequency one, and a CcxtExchange for it."""
    async with fake_session("kucoin") as session:
        kucoin(session).high_frequency = True  # before ccxt's first private call
        yield session


def kucoin(session: FakeSession) -> FakeKucoin:
    fake = session.fake
    assert isinstance(fake, FakeKucoin)
    return fake




def paths(fake: FakeKucoin, method: str, since: int = 0) -> list[str]:
    return [r.path for r in fake.requests[since:] if r.method == method]


async def test_balances_are_the_hf_trading_accounts_and_markets_load(hf: FakeSession) -> None:
    fake = kucoin(hf)
    markets = await hf.exchange.load_markets()
    assert {SYMBOL, "ETH/USDT", "SOL/USDT"} <= set(markets)
    assert markets[SYMBOL].taker_fee == Decimal("0.001")
    assert hf.exchange.client.options["hf"] is True  # ccxt asked, once, and was told HF
    assert len([r for r in fake.requests if r.path == "/api/v1/hf/accounts/opened"]) == 1

    balances = await hf.exchange.fetch_balance()
    assert balances["BTC"] == port.Balance(free=Decimal("0.5"), total=Decimal("0.5"))
    assert balances["USDT"] == port.Balance(free=Decimal("10000"), total=Decimal("10000"))
    [asked] = [r for r in fake.requests if r.path == "/api/v1/accounts"]
    assert asked.query.get("type") == "trade_hf"
    assert fake.unknown_paths == []


async def test_market_orders_and_a_resting_limit_order_trade_through_the_hf_endpoints(hf: FakeSession) -> None:
    fake, exchange = kucoin(hf), hf.exchange
    sell = order(hf, side="sell", amount="0.01", leg=0)
    sold = await exchange.create_order(sell)
    buy = order(hf, side="buy", amount="0.01", leg=1)
    bought = await exchange.create_order(buy)
    for request, result in ((sell, sold), (buy, bought)):
        [stored] = fake.orders_with_client_id(request.client_order_id)
        assert (stored.status, stored.filled, stored.fee) == ("closed", Decimal("0.01"), Decimal("0.6"))
        assert result.exchange_order_id == stored.id
        assert (result.status, result.filled, result.average_price) == ("closed", stored.filled, Decimal("60000"))
        assert (result.cost, result.fee, result.fee_currency, result.fee_known) == (
            Decimal("600"), stored.fee, "USDT", True
        )

    rest = limit_buy(hf)
    resting = await exchange.create_order(rest)
    assert (resting.status, resting.filled, resting.fee) == ("open", Decimal(0), Decimal(0))
    assert resting.exchange_order_id is not None
    held = await exchange.fetch_balance()  # the resting buy holds its price x size and the fee
    assert held["USDT"] == port.Balance(free=Decimal("9998.8") - Decimal("500.5"), total=Decimal("9998.8"))
    canceled = await exchange.cancel_order(SYMBOL, resting.exchange_order_id)
    assert (canceled.status, canceled.filled) == ("canceled", Decimal(0))
    assert canceled.client_order_id == rest.client_order_id
    [stored_rest] = fake.orders_with_client_id(rest.client_order_id)
    assert stored_rest.status == "canceled"

    balances = await exchange.fetch_balance()
    assert balances["BTC"].total == Decimal("0.5")
    assert balances["USDT"] == port.Balance(free=Decimal("9998.8"), total=Decimal("9998.8"))  # 600 - 600 - 2 x 0.6

    placed = [r for r in fake.requests if r.method == "POST"]
    assert [r.path for r in placed] == [HF_ORDERS] * 3
    assert [fake.sent_client_order_id(r) for r in placed] == [sell.client_order_id, buy.client_order_id,
                                                             rest.client_order_id]
    # HF create answers the ids alone: each order is read back (by id, with its symbol); the cancel too.
    ids = [sold.exchange_order_id, bought.exchange_order_id, resting.exchange_order_id]
    reads = [r for r in fake.requests if r.method == "GET" and r.path.startswith(HF_ORDERS + "/")]
    assert [r.path for r in reads] == [f"{HF_ORDERS}/{i}" for i in [*ids, resting.exchange_order_id]]
    assert all(r.query.get("symbol") == SYMBOL_ID for r in reads)
    [cancel] = [r for r in fake.requests if r.method == "DELETE"]
    assert (cancel.path, cancel.query.get("symbol")) == (f"{HF_ORDERS}/{resting.exchange_order_id}", SYMBOL_ID)
    assert fake.unknown_paths == []


async def test_lookup_by_client_id_finds_active_and_done_orders_and_none_for_an_id_never_sent(
    hf: FakeSession,
) -> None:
    fake, exchange = kucoin(hf), hf.exchange
    run_began = datetime.now(UTC)
    rest = limit_buy(hf)
    resting = await exchange.create_order(rest)
    done = order(hf, side="sell", amount="0.01", leg=1)
    await exchange.create_order(done)

    before = len(fake.requests)
    active = await exchange.fetch_order_by_client_id(SYMBOL, rest.client_order_id, placed_after=run_began)
    assert active is not None
    assert (active.status, active.exchange_order_id, active.filled) == ("open", resting.exchange_order_id, Decimal(0))
    found = await exchange.fetch_order_by_client_id(SYMBOL, done.client_order_id, placed_after=run_began)
    assert found is not None
    assert (found.status, found.filled, found.fee, found.fee_currency) == ("closed", Decimal("0.01"),
                                                                            Decimal("0.6"), "USDT")
    # KuCoin's HF look-up by clientOid finds a done order too: no listing is read for either.
    assert paths(fake, "GET", before) == [
        f"{HF_ORDERS}/client-order/{rest.client_order_id}", f"{HF_ORDERS}/client-order/{done.client_order_id}"
    ]

    assert resting.exchange_order_id is not None
    await exchange.cancel_order(SYMBOL, resting.exchange_order_id)
    canceled = await exchange.fetch_order_by_client_id(SYMBOL, rest.client_order_id, placed_after=run_began)
    assert canceled is not None and (canceled.status, canceled.filled) == ("canceled", Decimal(0))

    before = len(fake.requests)
    never_sent = client_id("kucoin", 7)
    assert await exchange.fetch_order_by_client_id(SYMBOL, never_sent, placed_after=run_began) is None
    # Not found by its clientOid, then looked for among the done orders since the run began: a page
    # short of the size asked for does not end the listing (the HF one answers 20 whatever ccxt
    # asks), a second page that brings nothing new does.
    assert paths(fake, "GET", before) == [f"{HF_ORDERS}/client-order/{never_sent}", HF_DONE, HF_DONE]
    assert fake.unknown_paths == []


async def test_a_busy_accounts_oldest_order_is_found_and_the_done_list_is_read_back_to_the_runs_start(
    hf: FakeSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, exchange = kucoin(hf), hf.exchange
    pages_of(fake, 2, monkeypatch)  # the done list's default limit (ccxt sends no limit there), and the adapter's
    run_began = datetime.now(UTC)
    # 5 s apart, the newest now (the adapter looks from 10 min before the run began)
    requests = await placed_apart(hf, 4)

    oldest = requests[0]
    found = await exchange.fetch_order_by_client_id(SYMBOL, oldest.client_order_id, placed_after=run_began)
    assert found is not None and found.client_order_id == oldest.client_order_id
    assert (found.status, found.filled) == ("closed", Decimal("0.0002"))

    # An id never sent: every page of the done list back to the run's start is read, each ending
    # (endAt) where the last one did, until a page shorter than asked for.
    before = len(fake.requests)
    missing = client_id("kucoin", 9)
    assert await exchange.fetch_order_by_client_id(SYMBOL, missing, placed_after=run_began) is None
    listings = [r for r in fake.requests[before:] if r.path == HF_DONE]
    assert len(listings) == 4  # [4, 3], [3, 2], [2, 1], [1]
    # The HF list's page size is its own ``limit`` (ccxt sends the classic ``pageSize`` alone).
    assert {r.query.get("limit") for r in listings} == {"2"}
    assert "endAt" not in listings[0].query
    oldest_first = sorted(fake.state.orders, key=lambda o: o.created_at)
    ends = [int(r.query["endAt"]) for r in listings[1:]]
    assert ends == [int(o.created_at * 1000) + 1000 for o in reversed(oldest_first[:3])]
    assert fake.unknown_paths == []


async def test_a_lost_answer_to_a_placement_is_found_by_its_client_id_and_the_order_exists_once(
    hf: FakeSession,
) -> None:
    fake, exchange = kucoin(hf), hf.exchange
    await exchange.load_markets()
    run_began = datetime.now(UTC)
    request = order(hf, side="buy", amount="0.01", leg=0)
    fake.drop_response_next()  # on the HF order path: executed, never answered
    with pytest.raises(port.OutcomeUnknown):
        await exchange.create_order(request)
    [stored] = fake.orders_with_client_id(request.client_order_id)
    [sent] = [r for r in fake.requests if r.method == "POST"]
    assert (sent.path, fake.sent_client_order_id(sent)) == (HF_ORDERS, request.client_order_id)

    found = await exchange.fetch_order_by_client_id(SYMBOL, request.client_order_id, placed_after=run_began)
    assert found is not None
    assert (found.exchange_order_id, found.status, found.filled) == (stored.id, "closed", Decimal("0.01"))
    assert (found.fee, found.fee_currency) == (stored.fee, "USDT")
    # Sent again all the same, the clientOid is refused: it can be used once.
    with pytest.raises(port.LegFailed):
        await exchange.create_order(request)
    assert len(fake.orders_with_client_id(request.client_order_id)) == 1
    assert fake.unknown_paths == []


async def test_the_base_class_faults_strike_the_hf_order_endpoints(hf: FakeSession) -> None:
    fake, exchange = kucoin(hf), hf.exchange
    await exchange.load_markets()
    refused = order(hf, leg=0)
    fake.rate_limit_next(path=fake.order_path)
    with pytest.raises(port.RetryLater):
        await exchange.create_order(refused)
    assert fake.orders_with_client_id(refused.client_order_id) == []

    timed_out = order(hf, leg=1)
    fake.timeout_next(path=fake.order_path)
    with pytest.raises(port.OutcomeUnknown):
        await exchange.create_order(timed_out)
    fake.state.listing_delay = 60  # KuCoin's order index lags: not found by its clientOid yet
    assert await exchange.fetch_order_by_client_id(SYMBOL, timed_out.client_order_id) is None
    fake.state.listing_delay = 0
    found = await exchange.fetch_order_by_client_id(SYMBOL, timed_out.client_order_id)
    assert found is not None and found.status == "closed"
    fake.state.closed_listed = False  # the exchange no longer lists done orders
    assert await exchange.fetch_order_by_client_id(SYMBOL, timed_out.client_order_id) is None
    assert fake.unknown_paths == []


async def test_a_second_account_on_the_same_exchange_reads_its_hf_balances(hf: FakeSession) -> None:
    fake = kucoin(hf)
    await hf.exchange.fetch_balance()  # the first account loads (and shares) the markets
    async with another_client(hf) as second:
        balances = await second.fetch_balance()
    assert balances.get("BTC") == port.Balance(free=Decimal("0.5"), total=Decimal("0.5"))
    assert fake.unknown_paths == []


async def test_a_second_account_on_the_same_exchange_places_through_the_hf_endpoints(hf: FakeSession) -> None:
    fake = kucoin(hf)
    await hf.exchange.load_markets()  # the first account loads (and shares) the markets
    request = order(hf, side="sell", amount="0.01")
    async with another_client(hf) as second:
        placed = await second.create_order(request)
    assert placed.status == "closed"
    assert [r.path for r in fake.requests if r.method == "POST"] == [HF_ORDERS]
    assert fake.unknown_paths == []


async def test_each_account_is_asked_whether_it_is_a_high_frequency_one(hf: FakeSession) -> None:
    # Accounts of one exchange share its markets, not their mode: a classic account whose client
    # takes the markets a high-frequency account's client loaded still trades at the classic
    # endpoints, having asked for itself.
    fake = kucoin(hf)
    await hf.exchange.load_markets()  # an HF account's client loads (and shares) the markets
    fake.high_frequency = False  # the next account is a classic one
    async with another_client(hf) as classic:
        placed = await classic.create_order(order(hf, side="sell", amount="0.01"))
        assert classic.client.options["hf"] is False
    assert placed.status == "closed"
    assert [r.path for r in fake.requests if r.method == "POST"] == ["/api/v1/orders"]
    assert len([r for r in fake.requests if r.path == "/api/v1/hf/accounts/opened"]) == 2
    assert fake.unknown_paths == []


async def test_a_unified_account_is_refused_before_anything_is_sent(hf: FakeSession) -> None:
    # KuCoin's unified trading accounts trade at endpoints of their own, which ccxt picks once the
    # account mode says UNIFIED; that path is not proven here, so the adapter refuses the account at
    # its first call, with the reason, before any balance, order or listing request.
    fake = kucoin(hf)
    fake.unified = True
    with pytest.raises(port.AccountNotSupported, match="unified trading account"):
        await hf.exchange.fetch_balance()
    with pytest.raises(port.AccountNotSupported):
        await hf.exchange.create_order(order(hf, side="sell", amount="0.01"))
    asked = {r.path for r in fake.requests}
    assert not any(p.startswith(("/api/v1/accounts", "/api/v1/hf/orders", "/api/v1/orders", "/api/ua/v1/account/b"))
                   for p in asked), asked
    assert fake.state.orders == [] and fake.unknown_paths == []
