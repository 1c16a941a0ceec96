"""Coinbase through ccxt's real client against a local fake: the adapter sends ``client_order_id``
raw (Coinbase ignores ccxt's unified clientOrderId), and learns the portfolio a key trades."""

from __future__ import annotations

import uuid
from decimal import Decimal

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.secrets import Credentials
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
        credentials = Credentials(api_key="cb-test-key-0123456789", secret="cb-test-secret-abcdefghij")
        exchange = CcxtExchange("coinbase", credentials, api_url=fake.url, rate_limit_ms=1)
        exchange.client.set_markets([coinbase_market()])
        try:
            assert exchange.account_uid is None
            balances = await exchange.fetch_balance()
        finally:
            await exchange.close()
    assert {asset: b.free for asset, b in balances.items()} == {"BTC": Decimal("0.5"), "USD": Decimal("1000")}
    assert len(fake.headers) == 2  # both pages, through the cursor
    assert exchange.account_uid == fake.portfolio_id
