"""With every logger at DEBUG, a whole rebalance through the pipeline (ccxt's real Kraken and
Binance classes against the fakes, real NATS and PostgreSQL) and a forced authentication failure
leave no API key, secret or request signature in any log record, raised error, history row or
bus message.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import asyncpg
import pytest

from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.port import ExchangeError
from tests.fakes.server import FakeExchangeServer
from tests.support.ccxt_pipeline import (
    ALL_EXCHANGES,
    CREDENTIALS,
    NEWER_EXCHANGES,
    PipelineBitget,
    PipelineKucoin,
    ccxt_pipeline,
    fake_exchange,
    run_rebalance,
    seed_ccxt_portfolio,
    use_exchange_clients,
)

pytestmark = pytest.mark.integration

VERBOSE_LOGGERS = ("", "ccxt", "ccxt.base.exchange", "services", "aiohttp")


class Capture(logging.Handler):
    """Everything a record could put in front of a reader: formatted line, raw message and
    arguments, exception (also from ``exc_info``, formatted here) and stack."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [self.format(record), str(record.msg), repr(record.args)]
        parts += [record.exc_text or "", record.stack_info or ""]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.texts.append("\n".join(parts))


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Attach with ``attach_capture`` once the services are up (starting them resets root's handlers)."""
    handler = Capture()
    saved = {name: logging.getLogger(name).level for name in VERBOSE_LOGGERS}
    yield handler
    logging.getLogger().removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def attach_capture(handler: Capture) -> None:
    logging.getLogger().addHandler(handler)
    for name in VERBOSE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)


def signatures(fake: FakeExchangeServer) -> set[str]:
    """Every request signature the fake received (Kraken's API-Sign, OKX's OK-ACCESS-SIGN, Bybit's
    X-BAPI-SIGN, Coinbase's CB-ACCESS-SIGN, Gate's SIGN, KuCoin's KC-API-SIGN and Bitget's
    ACCESS-SIGN headers, Binance's parameter)."""
    found: set[str] = set()
    for r in fake.requests:
        for header in ("API-Sign", "OK-ACCESS-SIGN", "X-BAPI-SIGN", "CB-ACCESS-SIGN", "SIGN", "KC-API-SIGN",
                       "ACCESS-SIGN"):
            if r.headers.get(header):
                found.add(r.headers[header])
        for text in (r.body, "&".join(f"{k}={v}" for k, v in r.query.items())):
            for pair in text.split("&"):
                name, _, value = pair.partition("=")
                if name == "signature" and value:
                    found.add(value)
    return found


def exception_chain_text(exc: BaseException) -> str:
    """The exception with every cause and context, suppressed or not (error reporters walk them)."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [repr(current), str(current), "".join(traceback.format_exception(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


async def stored_texts(pool: asyncpg.Pool, run_ids: list[str]) -> list[str]:
    """History rows and bus messages the runs wrote, as text."""
    rows = await pool.fetch(
        "SELECT description || ' ' || details::text AS t FROM activity_feed WHERE run_id = ANY($1::uuid[])"
        " UNION ALL SELECT reason || ' ' || errors::text || ' ' || strategy::text FROM rebalance_runs"
        "  WHERE id = ANY($1::uuid[])"
        " UNION ALL SELECT coalesce(error::text, '') FROM orders WHERE run_id = ANY($1::uuid[])"
        " UNION ALL SELECT coalesce(result::text, '') FROM order_intents WHERE run_id = ANY($1::uuid[])"
        " UNION ALL SELECT reason || ' ' || encode(coalesce(payload, ''::bytea), 'escape') FROM dead_letters"
        " UNION ALL SELECT encode(payload, 'escape') FROM outbox",
        run_ids,
    )
    return [r["t"] for r in rows]


# "kucoin-hf": KuCoin's high-frequency account, whose orders go to endpoints of their own;
# "bitget-uta": Bitget's unified trading account, traded at its v3 endpoints.
@pytest.mark.parametrize("dialect", [*ALL_EXCHANGES, *NEWER_EXCHANGES, "kucoin-hf", "bitget-uta"])
async def test_a_rebalance_and_an_auth_failure_at_debug_leak_no_credentials(
    dialect: str,
    capture: Capture,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    nats_url: str,
    namespace: str,
    db_pool: asyncpg.Pool,
) -> None:
    exchange_id, _, mode = dialect.partition("-")
    box = use_exchange_clients(monkeypatch)
    raised: list[str] = []
    async with (
        fake_exchange(exchange_id) as fake,
        ccxt_pipeline(database_url, nats_url, namespace, log_level="DEBUG"),
    ):
        if mode == "hf":
            assert isinstance(fake, PipelineKucoin)
            fake.high_frequency = True
        if mode == "uta":
            assert isinstance(fake, PipelineBitget)
            fake.unified = True
        attach_capture(capture)
        ok = await run_rebalance(
            db_pool, nats_url, namespace, await seed_ccxt_portfolio(db_pool, exchange_id, fake, box)
        )
        assert ok.status == "succeeded", ok.run["errors"]

        fake.reject_auth = True  # a second account on the same exchange: its key is refused
        refused = await seed_ccxt_portfolio(db_pool, exchange_id, fake, box)
        failed = await run_rebalance(db_pool, nats_url, namespace, refused)
        assert failed.status == "failed"
        assert "AuthenticationError" in str(failed.run["errors"])

        # The error as a caller of the exchange port receives it, with its whole chain.
        accounts = ExchangeAccounts(db_pool)
        try:
            async with accounts.use(refused.connection_id) as exchange:
                with pytest.raises(ExchangeError) as caught:
                    await exchange.fetch_balance()
            raised.append(exception_chain_text(caught.value))
            logging.getLogger("tests.secrets").exception("auth failure", exc_info=caught.value)
        finally:
            await accounts.close()
        stored = await stored_texts(db_pool, [ok.run["id"], failed.run["id"]])

    credentials = CREDENTIALS[exchange_id]
    sent_signatures = signatures(fake)
    assert len(sent_signatures) >= 5, "private requests were signed"
    secrets = {credentials.api_key, credentials.secret, *credentials.values(), *sent_signatures}

    for where, texts in (("log record", capture.texts), ("raised error", raised), ("database row", stored)):
        for text in texts:
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{where} holds a credential: {text[:500]}"

    # The check can fail: ccxt really logged its signed requests, the failure was logged and raised.
    ccxt_lines = [t for t in capture.texts if t.startswith("ccxt")]
    assert len(ccxt_lines) >= 10
    assert any(fake.key_header in t and "***" in t for t in ccxt_lines)
    assert any("AuthenticationError" in t for t in capture.texts if t.startswith("services"))
    assert any("Traceback" in t and "auth failure" in t for t in capture.texts)
    assert raised and "AuthenticationError" in raised[0]
    assert any("AuthenticationError" in t for t in stored)
    if mode == "hf":
        assert any(r.path == "/api/v1/hf/orders" for r in fake.requests), "the HF endpoints were used"
