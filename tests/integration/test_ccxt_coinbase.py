"""Coinbase through ccxt's real client against a local fake: the adapter sends ``client_order_id``
raw (Coinbase ignores ccxt's unified clientOrderId), and learns the portfolio a key trades."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.secrets import Credentials
from tests.fakes.clients import fake_session
from tests.fakes.coinbase import coinbase_market, start_fake_coinbase


async def test_create_order_sends_our_client_order_id_raw():
    async with start_fake_coinbase() as fake:
        credentials = Credentials(api_key="cb-test-key-0123456789", secret="cb-test-secret-abcdefghij")
        exchange = CcxtExchange("coinbase", credentials, api_url=fake.url, rate_limit_ms=1)
        exchange.client.set_markets([coinbase_market()])
        cid = client_order_id_for("coinbase", str(uuid.uuid4()), 3)
        try:
            result = await exchange.create_order(
                port.OrderRequest("BTC/USD", "sell", Decimal("0.01"), cid, order_type="limit",
                                  price=Decimal("61000"))
            )
        finally:
            await exchange.close()
    [sent] = fake.orders
    assert sent["client_order_id"] == cid  # not ccxt's own "ccxt-<uuid>"
    assert str(uuid.UUID(cid)) == cid
    assert sent["product_id"] == "BTC-USD"
    assert sent["side"] == "SELL"
    assert result.client_order_id == cid
    assert fake.headers[0].get("CB-ACCESS-KEY") == credentials.api_key


async def test_the_balance_names_the_portfolio_the_key_trades():
    # Coinbase scopes a key to one portfolio, and every account it lists names that portfolio: two
    # keys of one portfolio are one account to the one-connection rule (account_uid_ref).
    async with start_fake_coinbase() as fake:
        fake.page_size = 1  # one account per page, so that ccxt follows the cursor
        credentials = Credentials(api_key="cb-test-key-0123456789", secret="cb-test-secret-abcdefghij")
        exchange = CcxtExchange("coinbase", credentials, api_url=fake.url, rate_limit_ms=1)
        exchange.client.set_markets([coinbase_market()])
        try:
            assert exchange.account_uid is None
            balances = await exchange.fetch_balance()
        finally:
            await exchange.close()
    assert {asset: b.free for asset, b in balances.items()} == fake.balances
    assert len(fake.headers) == len(fake.balances)  # every page, through the cursor
    assert exchange.account_uid == fake.portfolio_id


async def test_a_lookup_reads_every_order_since_the_run_began_page_by_page():
    # Coinbase lists orders newest first, with no client-id filter, and ccxt's closed orders are its
    # filled ones alone. The look-up asks for every status from the run's start (less ten minutes of
    # clock skew) and follows the cursor, so a busy account's order is found, and a miss proves
    # the order is not there (the executor sends such a leg again only then).
    async with fake_session("coinbase") as session:
        session.fake.listing_page = 1
        symbol = session.symbol("BTC")
        run_began = datetime.now(UTC)
        cids = [client_order_id_for("coinbase", str(uuid.uuid4()), leg) for leg in range(3)]
        for cid in cids:
            request = port.OrderRequest(symbol, "sell", Decimal("0.0002"), cid)
            assert (await session.exchange.create_order(request)).status == "closed"
        before = len(session.fake.requests)
        found = await session.exchange.fetch_order_by_client_id(symbol, cids[0], placed_after=run_began)
        assert found is not None and (found.client_order_id, found.filled) == (cids[0], Decimal("0.0002"))
        listings = [r for r in session.fake.requests[before:] if r.path.endswith("/orders/historical/batch")]
        assert len(listings) == 3, "one page per order, newest first, the oldest last"
        starts = {datetime.fromisoformat(r.query["start_date"].replace("Z", "+00:00")) for r in listings}
        assert len(starts) == 1 and abs(starts.pop() - (run_began - timedelta(minutes=10))) < timedelta(seconds=1)
        assert "order_status" not in listings[0].query, "every status: a canceled partial fill too"
        # A run that began after the order (beyond the skew allowed) does not have it.
        later = run_began + timedelta(minutes=11)
        assert await session.exchange.fetch_order_by_client_id(symbol, cids[0], placed_after=later) is None
        never_sent = client_order_id_for("coinbase", str(uuid.uuid4()), 0)
        assert await session.exchange.fetch_order_by_client_id(symbol, never_sent, placed_after=run_began) is None


async def test_a_market_buy_spends_the_amount_at_the_plans_price():
    # ccxt sizes Coinbase's market buys by what they spend and refuses one without a price; sent
    # without the plan's price, no buy would ever reach Coinbase (nor Gate, Bitget, HTX, ...).
    async with fake_session("coinbase") as session:
        symbol = session.symbol("ETH")
        cid = client_order_id_for("coinbase", str(uuid.uuid4()), 1)
        buy = port.OrderRequest(symbol, "buy", Decimal("0.5"), cid, reference_price=Decimal("3000"))
        placed = await session.exchange.create_order(buy)
        [sent] = [r for r in session.fake.requests if r.method == "POST" and r.path == session.fake.order_path]
        assert json.loads(sent.body)["order_configuration"] == {"market_market_ioc": {"quote_size": "1500"}}
        assert placed.status == "closed" and placed.filled > 0
        unpriced = port.OrderRequest(symbol, "buy", Decimal("0.5"), client_order_id_for("coinbase", cid, 2))
        with pytest.raises(port.LegFailed, match="sized by what it spends"):
            await session.exchange.create_order(unpriced)
