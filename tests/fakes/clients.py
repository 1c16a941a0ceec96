"""Starting a fake exchange together with a real ccxt-backed adapter pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from services.common.exchanges.ccxt_adapter import CcxtExchange
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


@asynccontextmanager
async def fake_session(exchange_id: str) -> AsyncIterator[FakeSession]:
    """A fake ``exchange_id`` server (its family's: myokx speaks OKX's API) and a CcxtExchange with
    valid credentials for it."""
    async with STARTERS[family(exchange_id)](hang_seconds=HANG_SECONDS) as fake:
        credentials = Credentials(api_key=fake.api_key, secret=fake.secret, passphrase=fake.passphrase)
        exchange = CcxtExchange(
            exchange_id, credentials, api_url=fake.url, timeout_ms=CLIENT_TIMEOUT_MS, rate_limit_ms=1
        )
        try:
            yield FakeSession(exchange_id, fake, exchange, credentials)
        finally:
            await exchange.close()
