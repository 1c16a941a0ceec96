"""Starting a fake exchange together with a real ccxt-backed adapter pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import pytest

from services.common.exchanges import ccxt_adapter, port
from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.exchanges.ccxt_family import family
from services.common.secrets import Credentials
from tests.fakes.binance import start_fake_binance
from tests.fakes.bitget import start_fake_bitget
from tests.fakes.bybit import start_fake_bybit
from tests.fakes.coinbase import start_fake_coinbase
from tests.fakes.gate import start_fake_gate
from tests.fakes.kraken import start_fake_kraken
from tests.fakes.kucoin import start_fake_kucoin
from tests.fakes.okx import start_fake_okx
from tests.fakes.server import FakeExchangeServer

# Every fake dialect: how to start it, and the quote currency of its markets.
STARTERS: dict[str, Callable[..., AbstractAsyncContextManager[FakeExchangeServer]]] = {
    "kraken": start_fake_kraken,
    "binance": start_fake_binance,
    "bitget": start_fake_bitget,
    "bybit": start_fake_bybit,
    "okx": start_fake_okx,
    "coinbase": start_fake_coinbase,
    "gate": start_fake_gate,
    "kucoin": start_fake_kucoin,
}
QUOTES = {
    "kraken": "USD", "binance": "USDT", "bitget": "USDT", "bybit": "USDT", "okx": "USDT", "coinbase": "USD",
    "kucoin": "USDT", "gate": "USDT",
}
CLIENT_TIMEOUT_MS = 500
HANG_SECONDS = 1.5


@dataclass
class FakeSession:
    exchange_id: str
    fake: FakeExchangeServer
    exchange: CcxtExchange
    credentials: Credentials

    @property
    def quote(self) -> str:
        return QUOTES[family(self.exchange_id)]

    def symbol(self, base: str) -> str:
        return f"{base}/{self.quote}"


def _client(exchange_id: str, credentials: Credentials, url: str) -> CcxtExchange:
    return CcxtExchange(exchange_id, credentials, api_url=url, timeout_ms=CLIENT_TIMEOUT_MS, rate_limit_ms=1)


@asynccontextmanager
async def fake_session(exchange_id: str) -> AsyncIterator[FakeSession]:
    """A fake ``exchange_id`` server (its family's: myokx speaks OKX's API) and a CcxtExchange with
    valid credentials for it."""
    async with STARTERS[family(exchange_id)](hang_seconds=HANG_SECONDS) as fake:
        credentials = Credentials(api_key=fake.api_key, secret=fake.secret, passphrase=fake.passphrase)
        exchange = _client(exchange_id, credentials, fake.url)
        try:
            yield FakeSession(exchange_id, fake, exchange, credentials)
        finally:
            await exchange.close()


@asynccontextmanager
async def another_client(session: FakeSession) -> AsyncIterator[CcxtExchange]:
    """A second CcxtExchange for the session's fake: another account's client in this process, which
    takes the markets the first one loaded (``ccxt_shared_markets``)."""
    exchange = _client(session.exchange_id, session.credentials, session.fake.url)
    try:
        yield exchange
    finally:
        await exchange.close()


def client_id(exchange_id: str, leg: int = 0) -> str:
    """A client order id as the services make them (a run's leg)."""
    return client_order_id_for(exchange_id, str(uuid.uuid4()), leg)


def order(session: FakeSession, side: port.Side = "buy", amount: str = "0.01", leg: int = 0) -> port.OrderRequest:
    """A market order of BTC as a run's leg sends it (its client id, the plan's price)."""
    symbol = session.symbol("BTC")
    # The plan's price goes with every order: where a market buy is sized by what it spends.
    return port.OrderRequest(symbol, side, Decimal(amount), client_id(session.exchange_id, leg),
                             reference_price=session.fake.state.prices[symbol])


def limit_buy(session: FakeSession, price: str = "50000", amount: str = "0.01", leg: int = 0) -> port.OrderRequest:
    """A limit buy of BTC below its price (60,000): it rests on the book."""
    return port.OrderRequest(session.symbol("BTC"), "buy", Decimal(amount), client_id(session.exchange_id, leg),
                             order_type="limit", price=Decimal(price))


async def placed_apart(session: FakeSession, count: int, side: port.Side = "sell") -> list[port.OrderRequest]:
    """``count`` market orders of 0.0002 BTC, each filled at once, then placed 5 s apart in time
    (``spread_in_time``), the first the oldest."""
    requests = [order(session, side=side, amount="0.0002", leg=leg) for leg in range(count)]
    for request in requests:
        assert (await session.exchange.create_order(request)).status == "closed"
    spread_in_time(session.fake)
    return requests


def pages_of(fake: FakeExchangeServer, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings of ``size`` orders a page, as the adapter asks for them and expects them where pages
    go back in time (Gate, KuCoin)."""
    fake.listing_page = size
    monkeypatch.setattr(ccxt_adapter, "LISTING_PAGE_SIZE", size)
    monkeypatch.setattr(ccxt_adapter, "SMALLEST_FULL_PAGE", size)


def spread_in_time(fake: FakeExchangeServer, seconds: float = 5.0) -> None:
    """The fake's orders placed ``seconds`` apart, the last one now (they were placed within a
    second, which the pages by time of Gate and KuCoin read together)."""
    orders = sorted(fake.state.orders, key=lambda o: o.created_at)
    for age, placed in enumerate(reversed(orders)):
        placed.created_at -= age * seconds
