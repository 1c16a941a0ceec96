from __future__ import annotations

import logging

from services.common.redact import MASK, RedactingFilter, redact_text, register_secret


def record(msg: str, *args: object, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("ccxt.base.exchange", logging.DEBUG, __file__, 1, msg, args, exc_info)


def test_registered_secret_is_masked_in_message_and_args():
    register_secret("registered-secret-abc")
    rec = record("POST %s, Request: %s", "http://x/0/private/AddOrder", {"body": "registered-secret-abc"})
    RedactingFilter().filter(rec)
    assert "registered-secret-abc" not in rec.getMessage()
    assert MASK in rec.getMessage()


def test_well_known_headers_are_masked_even_unregistered():
    headers = {"API-Key": "kkkkkkkk", "API-Sign": "ssssssss", "X-MBX-APIKEY": "bbbbbbbb",
               "CB-ACCESS-SIGN": "cccccccc", "Authorization": "Bearer tttttttt", "Content-Type": "json"}
    text = redact_text(f"GET http://h/api?timestamp=1&signature=deadbeef99 {headers}")
    for value in ("kkkkkkkk", "ssssssss", "bbbbbbbb", "cccccccc", "tttttttt", "deadbeef99"):
        assert value not in text
    assert "json" in text and "timestamp=1" in text


def test_any_exchanges_prefixed_credential_headers_are_masked_even_unregistered():
    # Bybit, OKX, KuCoin, Bitget, Bitfinex: a prefix, then what the header carries.
    headers = {"X-BAPI-API-KEY": "k1k1k1k1", "X-BAPI-SIGN": "s1s1s1s1", "OK-ACCESS-PASSPHRASE": "p1p1p1p1",
               "KC-API-PASSPHRASE": "p2p2p2p2", "KC-API-SIGN": "s2s2s2s2", "ACCESS-KEY": "k2k2k2k2",
               "bfx-signature": "s3s3s3s3", "X-BAPI-RECV-WINDOW": "5000", "X-BAPI-TIMESTAMP": "1796677156024"}
    text = redact_text(f"GET http://h/v5/order/realtime?, Request: {headers}")
    for value in ("k1k1k1k1", "s1s1s1s1", "p1p1p1p1", "p2p2p2p2", "s2s2s2s2", "k2k2k2k2", "s3s3s3s3"):
        assert value not in text
    assert "'X-BAPI-RECV-WINDOW': '5000'" in text and "1796677156024" in text


def test_json_and_form_pairs_are_masked():
    text = redact_text('{"apiKey": "a1b2c3d4e5", "secret": "zzzzzzzz"} password=hunter22&x=1')
    assert "a1b2c3d4e5" not in text and "zzzzzzzz" not in text and "hunter22" not in text
    assert "x=1" in text


def test_exception_text_is_masked():
    register_secret("secret-in-exception-1")
    try:
        raise RuntimeError("failed with secret-in-exception-1")
    except RuntimeError:
        import sys

        rec = record("boom", exc_info=sys.exc_info())
    RedactingFilter().filter(rec)
    formatted = logging.Formatter().format(rec)
    assert "secret-in-exception-1" not in formatted
    assert "RuntimeError" in formatted


def test_short_values_are_not_registered():
    register_secret("abc")
    assert redact_text("abc def") == "abc def"


def test_ordinary_text_is_untouched():
    text = "placed order rb-123 for BTC/USD amount=0.01"
    assert redact_text(text) == text
