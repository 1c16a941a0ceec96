"""With every logger at DEBUG, a whole exchange session leaves no key or secret in any log line."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import pytest

from services.common.exchanges import port
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.redact import install_redaction
from services.common.secrets import Credentials, SecretBox
from tests.fakes.clients import fake_session


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.mark.parametrize("exchange_id", ["kraken", "binance"])
async def test_full_session_at_debug_logs_no_credentials(exchange_id: str):
    install_redaction()
    capture = Capture()
    root = logging.getLogger()
    saved_levels = {name: logging.getLogger(name).level for name in ("", "ccxt", "ccxt.base.exchange")}
    root.addHandler(capture)
    for name in saved_levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    log = logging.getLogger("tests.rebalance")
    errors: list[str] = []
    try:
        async with fake_session(exchange_id) as session:
            # The credentials reach the adapter the way production does: sealed, then opened.
            box = SecretBox([b"Q2hhbmdlLW1lLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmc="])
            ciphertext, _ = box.seal(session.credentials)
            opened = box.open(ciphertext)
            assert opened == session.credentials
            exchange = session.exchange
            await exchange.load_markets()
            await exchange.fetch_balance()
            await exchange.fetch_prices()
            sides: tuple[port.Side, ...] = ("sell", "buy")
            for leg, side in enumerate(sides):
                cid = client_order_id_for(exchange_id, str(uuid.uuid4()), leg)
                result = await exchange.create_order(
                    port.OrderRequest(session.symbol("ETH"), side, Decimal("0.5"), cid)
                )
                log.info("placed %s with %r", result, opened)
            session.fake.drop_response_next()
            session.fake.reject_auth = True
            for failing in (exchange.fetch_balance(), exchange.fetch_prices()):
                try:
                    await failing
                except port.ExchangeError as exc:
                    errors.append(str(exc))
                    log.exception("exchange call failed")
            session.fake.reject_auth = False
            # A careless log call with the raw config must still be masked.
            log.debug("ccxt config %s", opened.to_ccxt_config())
            log.debug("headers %s", {"API-Key": "unregistered-key-value", "X-MBX-APIKEY": "other-key-1"})
            secrets = (session.credentials.api_key, session.credentials.secret, "unregistered-key-value",
                       "other-key-1")
    finally:
        root.removeHandler(capture)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)

    # ccxt really logged its requests (with the key header's name, masked): the check can fail.
    ccxt_lines = [line for line in capture.lines if line.startswith("ccxt")]
    assert len(ccxt_lines) >= 10
    key_header = {"kraken": "API-Key", "binance": "X-MBX-APIKEY"}[exchange_id]
    assert any(key_header in line and "***" in line for line in ccxt_lines)
    assert any("exchange call failed" in line and "Traceback" in line for line in capture.lines)
    assert errors
    for text in capture.lines + errors:
        for secret in secrets:
            assert secret not in text
    if exchange_id == "binance":
        assert not any("signature=" in line and "signature=***" not in line for line in capture.lines)


def test_credentials_repr_is_masked_in_log_arguments(caplog: pytest.LogCaptureFixture):
    install_redaction()
    credentials = Credentials(api_key="AKIA-abcdef-123456", secret="very-secret-value-xyz")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tests.repr").debug("using %s / %r", credentials, credentials)
    assert "very-secret-value-xyz" not in caplog.text
    assert "AKIA-abcdef-123456" not in caplog.text
    assert "using Credentials(api_key=" in caplog.text  # the record itself is kept
