"""The whole pipeline (pricer, planner, executor, ledger) trading through ccxt's real Kraken,
Binance, OKX, Bybit, Coinbase, Gate, KuCoin and Bitget classes against the fake exchange servers,
on real NATS and PostgreSQL.

- ``fake_exchange``: a fake server with four markets (BTC, ETH, SOL, ADA) in its quote, whose state
  can also refuse one market's orders or leave them resting, and can start rejecting the API key
  at the first order request (the faults the servers' own queue cannot time).
- ``use_exchange_clients``: the encryption key the services open credentials with, and ccxt clients
  with a short timeout and no per-exchange rate-limit wait (ExchangeAccounts has no setting for them).
- ``seed_ccxt_portfolio``: a user, an encrypted connection to the fake, a portfolio and its strategy.
- ``ccxt_pipeline``: the four services in this process; ``run_rebalance``: one run, waited for,
  with everything it left in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet

from contracts.v1 import Strategy
from contracts.v1.strategy import OrderType
from services.common.exchanges import ccxt_adapter
from services.common.secrets import KEYS_ENV, Credentials, SecretBox, mask
from tests.fakes.binance import FakeBinance
from tests.fakes.bitget import FakeBitget
from tests.fakes.bybit import FakeBybit
from tests.fakes.clients import QUOTES
from tests.fakes.coinbase import FakeCoinbase
from tests.fakes.engine import EngineError, ExchangeState, FakeMarket, FakeOrder
from tests.fakes.gate import FakeGate
from tests.fakes.kraken import FakeKraken
from tests.fakes.kucoin import FakeKucoin
from tests.fakes.okx import FakeOkx
from tests.fakes.server import FakeExchangeServer
from tests.support.pipeline import Seeded, due_event, in_process_pipeline, publish, wait_for

# The fault suite runs on every fake; its tests of the executor's own rules run on these two alone.
EXCHANGES = ("kraken", "binance")
ALL_EXCHANGES = ("kraken", "binance", "okx", "bybit", "coinbase")
# The fakes that arrived last: a clean run and a lost answer, through the whole pipeline.
NEWER_EXCHANGES = ("gate", "kucoin", "bitget")
PRICES = {"BTC": Decimal("60000"), "ETH": Decimal("3000"), "SOL": Decimal("150"), "ADA": Decimal("0.5")}
WEIGHTS = {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}
# Overweight in BTC, the rest in cash: one sell (BTC) and three buys (ETH, SOL, ADA).
START_BALANCES = {"BTC": Decimal("0.15"), "quote": Decimal("5000")}
CLIENT_TIMEOUT_MS = 1500
HANG_SECONDS = 2.5  # longer than the client timeout: a held answer is a timeout
CREDENTIALS = {
    "kraken": Credentials(
        api_key="kraken-pipeline-key-7f3a9c1e5b",
        secret="cGlwZWxpbmUtc2VjcmV0LWtyYWtlbi1kbzEtbm90LWxvZw==",
    ),
    "binance": Credentials(
        api_key="binance-pipeline-key-4d8e2a6f0c19b7",
        secret="binance-pipeline-secret-9b1f5d3a7e2c",
    ),
    "okx": Credentials(
        api_key="okx-pipeline-key-2c7e9a4f1b8d",
        secret="OKX-PIPELINE-SECRET-5E1A9C3F7B2D",
        passphrase="okx-pipeline-passphrase-81",
    ),
    "bybit": Credentials(
        api_key="bybitPipelineKey6a2f",
        secret="bybitPipelineSecret3d9e7c1b5a8f0e2d",
    ),
    "coinbase": Credentials(
        api_key="coinbase-pipeline-key-3b7d1f9a",
        secret="coinbase-pipeline-secret-8e2c6a4f0d",
    ),
    "gate": Credentials(
        api_key="gatePipelineKey5c1e9b3d7f",
        secret="gatePipelineSecret2a6e0c4b8d1f5a9e",
    ),
    "kucoin": Credentials(
        api_key="kucoin-pipeline-key-6d2a8f4c",
        secret="kucoin-pipeline-secret-1e7b3d9f5a",
        passphrase="kucoin-pipeline-passphrase-42",
    ),
    "bitget": Credentials(
        api_key="bg_pipeline_key_9f3b7d1e5c",
        secret="bitget-pipeline-secret-4c8e2a6f0b",
        passphrase="bitget-pipeline-passphrase-17",
    ),
}


@dataclass
class FaultyState(ExchangeState):
    """The fake's trading state plus per-market refusals and resting orders."""

    # symbol -> the engine's refusal kind ("insufficient_funds", "invalid_order") for every order
    refuse: dict[str, str] = field(default_factory=dict)
    # symbols whose orders never fill: they rest on the book until canceled
    resting: set[str] = field(default_factory=set)

    def place(
        self,
        symbol: str,
        side: str,
        order_type: str,
        amount: Decimal,
        price: Decimal | None,
        client_order_id: str | None,
        order_id: str,
        fee_in_base: bool | None = None,
    ) -> FakeOrder:
        kind = self.refuse.get(symbol)
        if kind is not None:
            raise EngineError(kind, f"{symbol} refused: {kind}")
        return super().place(symbol, side, order_type, amount, price, client_order_id, order_id, fee_in_base)

    def _fill(self, order: FakeOrder, market: FakeMarket, quantity: Decimal) -> None:
        if order.symbol not in self.resting:
            super()._fill(order, market, quantity)


class _PipelineFake(FakeExchangeServer):
    """``fail_auth_at_first_order``: the API key stops working when the first order arrives;
    ``faulty``: the state's per-market refusals and resting orders."""

    fail_auth_at_first_order = False

    @property
    def faulty(self) -> FaultyState:
        assert isinstance(self.state, FaultyState)
        return self.state

    def _take_fault(self, path: str) -> str | None:
        if self.fail_auth_at_first_order and path == self.order_path:
            self.reject_auth = True
        return super()._take_fault(path)


class PipelineKraken(_PipelineFake, FakeKraken):
    pass


class PipelineBinance(_PipelineFake, FakeBinance):
    pass


class PipelineOkx(_PipelineFake, FakeOkx):
    pass


class PipelineBybit(_PipelineFake, FakeBybit):
    pass


class PipelineCoinbase(_PipelineFake, FakeCoinbase):
    pass


class PipelineGate(_PipelineFake, FakeGate):
    pass


class PipelineKucoin(_PipelineFake, FakeKucoin):
    pass


class PipelineBitget(_PipelineFake, FakeBitget):
    pass


PipelineFake = (
    PipelineKraken | PipelineBinance | PipelineOkx | PipelineBybit | PipelineCoinbase | PipelineGate
    | PipelineKucoin | PipelineBitget
)
# Each exchange's pipeline fake, by whether its keys have a passphrase (a constructor argument).
KEYED_FAKES: dict[str, type[PipelineKraken | PipelineBinance | PipelineBybit | PipelineCoinbase | PipelineGate]] = {
    "kraken": PipelineKraken, "binance": PipelineBinance, "bybit": PipelineBybit, "coinbase": PipelineCoinbase,
    "gate": PipelineGate,
}
PASSPHRASE_FAKES: dict[str, type[PipelineOkx | PipelineKucoin | PipelineBitget]] = {
    "okx": PipelineOkx, "kucoin": PipelineKucoin, "bitget": PipelineBitget,
}
# Each fake charges the taker fee ccxt reports for it.
FEE_RATES = {exchange_id: Decimal(cls.taker_fee) for exchange_id, cls in {**KEYED_FAKES, **PASSPHRASE_FAKES}.items()}


def pipeline_state(exchange_id: str) -> FaultyState:
    quote = QUOTES[exchange_id]
    markets = {m.symbol: m for m in (FakeMarket(base, quote) for base in PRICES)}
    balances = {"BTC": START_BALANCES["BTC"], quote: START_BALANCES["quote"]}
    return FaultyState(
        markets=markets,
        prices={f"{base}/{quote}": price for base, price in PRICES.items()},
        balances=balances,
        fee_rate=FEE_RATES[exchange_id],
    )


@contextlib.asynccontextmanager
async def fake_exchange(exchange_id: str) -> AsyncIterator[PipelineFake]:
    """A running fake ``exchange_id`` on 127.0.0.1 with the pipeline's markets and balances."""
    credentials = CREDENTIALS[exchange_id]
    state, key, secret = pipeline_state(exchange_id), credentials.api_key, credentials.secret
    fake: PipelineFake
    if exchange_id in PASSPHRASE_FAKES:
        assert credentials.passphrase is not None
        fake = PASSPHRASE_FAKES[exchange_id](state, key, secret, credentials.passphrase, HANG_SECONDS)
    else:
        fake = KEYED_FAKES[exchange_id](state, key, secret, HANG_SECONDS)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def use_exchange_clients(monkeypatch: pytest.MonkeyPatch) -> SecretBox:
    """The services' encryption key, and fast-failing ccxt clients; returns the box to seal with."""
    key = Fernet.generate_key()
    monkeypatch.setenv(KEYS_ENV, key.decode())
    real = ccxt_adapter.CcxtExchange

    class TestTimedCcxtExchange(real):  # type: ignore[valid-type,misc]
        def __init__(self, exchange_id: str, credentials: Credentials | None, **kwargs: Any) -> None:
            kwargs["timeout_ms"] = CLIENT_TIMEOUT_MS
            kwargs["rate_limit_ms"] = 1
            super().__init__(exchange_id, credentials, **kwargs)

    # ExchangeAccounts imports the class at call time, so the patched name is the one it builds.
    monkeypatch.setattr(ccxt_adapter, "CcxtExchange", TestTimedCcxtExchange)
    return SecretBox([key])


async def seed_ccxt_portfolio(
    pool: asyncpg.Pool,
    exchange_id: str,
    fake: FakeExchangeServer,
    box: SecretBox,
    *,
    weights: Mapping[str, int] = WEIGHTS,
    threshold: str = "5",
    order_type: OrderType = "market",
    limit_timeout_seconds: int = 60,
) -> Seeded:
    quote = QUOTES[exchange_id]
    credentials = CREDENTIALS[exchange_id]
    sealed, key_version = box.seal(credentials)
    tag = uuid.uuid4().hex[:8]
    user_id = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Test') RETURNING id::text", f"ccxt-{tag}@example.com"
    )
    connection_id = await pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, credentials_enc, key_version,"
        " api_key_hint, api_url) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7) RETURNING id::text",
        user_id,
        exchange_id,
        f"fake {exchange_id}",
        sealed,
        key_version,
        mask(credentials.api_key),
        fake.url,
    )
    target = {k: str(v) for k, v in weights.items()}
    name = f"{exchange_id} portfolio {tag}"
    portfolio_id = await pool.fetchval(
        "INSERT INTO portfolios (user_id, connection_id, name, target_weights, quote_currency,"
        " rebalance_enabled, rebalance_threshold, order_type, limit_timeout_seconds)"
        " VALUES ($1::uuid, $2::uuid, $3, $4, $5, false, $6, $7, $8) RETURNING id::text",
        user_id,
        connection_id,
        name,
        target,
        quote,
        Decimal(threshold),
        order_type,
        limit_timeout_seconds,
    )
    strategy = Strategy(
        portfolio_id=portfolio_id,
        user_id=user_id,
        name=name,
        connection_id=connection_id,
        exchange_id=exchange_id,
        target_weights={k: Decimal(v) for k, v in target.items()},
        quote_currency=quote,
        threshold=Decimal(threshold),
        order_type=order_type,
        limit_timeout_seconds=limit_timeout_seconds,
    )
    return Seeded(user_id, connection_id, portfolio_id, f"{exchange_id}:{fake.url}", strategy)


# The in-process pipeline, under the name the ccxt tests know it by.
ccxt_pipeline = in_process_pipeline


@dataclass(frozen=True)
class RunHistory:
    """Everything one run left in the database."""

    run: asyncpg.Record
    intents: list[asyncpg.Record]  # order_intents, by leg
    orders: list[asyncpg.Record]  # orders, by leg
    trades: list[asyncpg.Record]
    activity: list[asyncpg.Record]  # (event_type, description, details), in order
    dead_letters: list[asyncpg.Record]

    @property
    def status(self) -> str:
        return str(self.run["status"])

    def activity_types(self) -> list[str]:
        return [str(a["event_type"]) for a in self.activity]


class RunNotCompleted(AssertionError):
    """The ledger has no completion for the run in time (it is stuck or its plan was dead-lettered)."""


async def run_rebalance(
    pool: asyncpg.Pool,
    nats_url: str,
    namespace: str,
    seeded: Seeded,
    *,
    timeout: float = 45.0,
    started_at: datetime | None = None,
) -> RunHistory:
    """Publish a due event for ``seeded`` (claimed at ``started_at``, now by default) and wait
    until the ledger has the run's completion."""
    due = due_event(seeded, started_at=started_at)
    await publish(nats_url, f"{namespace}.v1.evt.rebalance.due", due.model_dump_json().encode(), due.message_id)
    try:
        await wait_for(
            pool,
            "SELECT 1 FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'",
            due.run_id,
            timeout=timeout,
        )
    except AssertionError:
        history = await run_history(pool, due.run_id)
        raise RunNotCompleted(
            f"run {due.run_id} not completed within {timeout}s: status {history.status}, legs "
            f"{[(i['leg'], i['state'], i['attempts']) for i in history.intents]}, "
            f"dead letters {[d['reason'] for d in history.dead_letters]}"
        ) from None
    # Order events and the completion travel separately: give every leg's row a moment to land
    # (a leg without one is the test's to report, from the history).
    with contextlib.suppress(AssertionError):
        await wait_for(
            pool,
            "SELECT (SELECT count(*) FROM orders WHERE run_id = $1::uuid)"
            " >= (SELECT count(*) FROM order_intents WHERE run_id = $1::uuid)",
            due.run_id,
            timeout=3.0,
        )
    return await run_history(pool, due.run_id)


async def run_history(pool: asyncpg.Pool, run_id: str) -> RunHistory:
    run = await pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", run_id)
    assert run is not None, f"the ledger has no run {run_id}"
    intents = await pool.fetch("SELECT * FROM order_intents WHERE run_id = $1::uuid ORDER BY leg", run_id)
    orders = await pool.fetch("SELECT * FROM orders WHERE run_id = $1::uuid ORDER BY leg", run_id)
    trades = await pool.fetch("SELECT * FROM trades WHERE run_id = $1::uuid ORDER BY id", run_id)
    activity = await pool.fetch(
        "SELECT event_type, description, details FROM activity_feed WHERE run_id = $1::uuid ORDER BY created_at, id",
        run_id,
    )
    dead = await pool.fetch("SELECT * FROM dead_letters WHERE position(convert_to($1, 'UTF8') in payload) > 0", run_id)
    return RunHistory(run, list(intents), list(orders), list(trades), list(activity), list(dead))


def create_requests(fake: FakeExchangeServer, exchange_id: str, client_order_id: str) -> int:
    """How many order-placing requests carried this client order id."""
    return sum(
        1
        for r in fake.requests
        if r.method == "POST" and r.path == fake.order_path and fake.sent_client_order_id(r) == client_order_id
    )


async def settle(seconds: float = 1.0) -> None:
    """Give redeliveries a chance to show up (a duplicate would appear within this time)."""
    await asyncio.sleep(seconds)
