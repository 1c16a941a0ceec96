"""Keep credentials out of every log line, with every logger at DEBUG.

ccxt logs each request's headers (API keys, signatures) at DEBUG, and exception messages can carry
signed URLs. Two layers remove them:

- values registered with ``register_secret`` (every opened ``Credentials`` registers its own) are
  replaced wherever they appear;
- well-known credential header and parameter names (``API-Key``, ``X-MBX-APIKEY``, ``signature``,
  ``CB-ACCESS-*``, ``Authorization`` ...) have their values replaced, whoever's they are.

``install_redaction()`` puts the filter on every handler of the root logger and on the ccxt
loggers, and installs a log-record factory so that records are clean from the moment they are
created, even for handlers attached later.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"
# Shorter values are too likely to collide with ordinary text (and too weak to be real secrets).
_MIN_SECRET_LENGTH = 6

_SENSITIVE_NAMES = (
    r"api[-_]?key",
    r"apikey",
    r"api[-_]?sign",
    r"api[-_]?secret",
    r"secret",
    r"x-mbx-apikey",
    r"signature",
    r"sign",
    r"cb-access-[a-z]+",
    r"ok-access-[a-z]+",
    r"authorization",
    r"passphrase",
    r"password",
    r"private[-_]?key",
    r"token",
    r"x-api-key",
    # Exchanges' prefixed credential headers: Bybit's X-BAPI-SIGN, KuCoin's KC-API-PASSPHRASE,
    # Bitget's ACCESS-KEY, Bitfinex's bfx-signature, ... (named: a pattern of any prefix would
    # double the cost of masking every log line)
    r"(?:x-bapi|kc-api|access|bfx|x-bit|x-gate)-(?:api-?key|key|sign|signature|passphrase|secret)",
)
_NAMES = "|".join(_SENSITIVE_NAMES)
# 'API-Key': 'value'  /  "API-Key": "value"  (dict reprs and JSON)
_QUOTED_PAIR = re.compile(
    r"""(?P<head>(?P<q>['"])(?:""" + _NAMES + r""")(?P=q)\s*:\s*)(?P<vq>['"])(?P<value>.*?)(?P=vq)""",
    re.IGNORECASE,
)
# signature=value in query strings and form bodies; API-Key: value in raw header text
_PLAIN_PAIR = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_-])(?:" + _NAMES + r")\s*[=:]\s*)(?P<value>(?:Bearer\s+)?[^\s&,;'\"})\]]+)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(*values: str | None) -> None:
    """Remember values that must never appear in a log record."""
    global _secrets
    fresh = {v for v in values if v and len(v) >= _MIN_SECRET_LENGTH}
    if not fresh - _secrets:
        return
    with _lock:
        _secrets = _secrets | fresh


def registered_secret_count() -> int:
    return len(_secrets)


def redact_text(text: str) -> str:
    """``text`` with registered secrets and credential-looking name/value pairs masked."""
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _QUOTED_PAIR.sub(lambda m: f"{m['head']}{m['vq']}{MASK}{m['vq']}", text)
    return _PLAIN_PAIR.sub(lambda m: f"{m['head']}{MASK}", text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep what we can, masked
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact_text(message)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        exc_type, exc, tb = record.exc_info
        formatted = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
        record.exc_text = redact_text(formatted)
        # Handlers that format exc_info themselves would bypass the masked exc_text.
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception and stack text; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_redacted", False):
            _redact_record(record)
            record._redacted = True
        return True


CCXT_LOGGERS = ("ccxt", "ccxt.base.exchange", "ccxt.async_support.base.exchange")

_installed_factory: Callable[..., logging.LogRecord] | None = None
_install_lock = threading.Lock()


def _attach(filter_: logging.Filter, targets: Iterable[logging.Filterer]) -> None:
    for target in targets:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(filter_)


def install_redaction(extra_loggers: Iterable[str] = ()) -> RedactingFilter:
    """Attach the filter to root's handlers, the ccxt loggers and ``extra_loggers``; idempotent."""
    global _installed_factory
    filter_ = RedactingFilter()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in (*CCXT_LOGGERS, *extra_loggers)]
    _attach(filter_, [*root.handlers, *loggers])
    for logger in loggers:
        _attach(filter_, logger.handlers)
    with _install_lock:
        if _installed_factory is None:
            previous = logging.getLogRecordFactory()

            def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                filter_.filter(record)
                return record

            logging.setLogRecordFactory(redacting_factory)
            _installed_factory = redacting_factory
    return filter_
