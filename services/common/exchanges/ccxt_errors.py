"""Sorting ccxt's exceptions into the port's four error classes.

Pure: it works on the names of an exception's classes (its MRO), so it needs no ccxt import and
is tested without the network. The rule that matters most: when an order request fails in
transit, the order may exist, so the outcome is *unknown* and the order must be looked up, never
resent.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.exchanges import port
from services.common.redact import redact_text

_KEY_REFUSED = ("AuthenticationError", "PermissionDenied")
_RUN_FAILED = ("AccountSuspended", "AccountNotEnabled")
# The exchange answered "not now" before doing anything: safe to retry, also for orders.
_REFUSED_FOR_NOW = ("RateLimitExceeded", "DDoSProtection", "InvalidNonce")
_LEG_FAILED = (
    "InsufficientFunds",
    "InvalidOrder",
    "BadSymbol",
    "OrderNotFound",
    "MarketClosed",
    "BadRequest",
    "OperationRejected",
    "ArgumentsRequired",
    "NotSupported",
)
_MAX_MESSAGE = 300


def classify(
    class_names: Sequence[str], *, placing_order: bool, transport_failure: bool = False
) -> type[port.ExchangeError]:
    """The port error for an exception whose class and bases are ``class_names`` (MRO order).

    ``transport_failure``: the exception came from the HTTP layer rather than from an exchange
    answer (ccxt wraps some aiohttp errors in a bare ``ExchangeError``).
    """
    names = set(class_names)
    if names & set(_RUN_FAILED):  # before the key: ccxt derives these from AuthenticationError
        return port.RunFailed
    if names & set(_KEY_REFUSED):
        return port.KeyRefused
    if names & set(_REFUSED_FOR_NOW):
        return port.RetryLater
    if "NetworkError" in names or transport_failure:
        # Timeout, dropped connection, 5xx: the order may have been accepted.
        return port.OutcomeUnknown if placing_order else port.RetryLater
    if names & set(_LEG_FAILED):
        return port.LegFailed if placing_order else port.ExchangeError
    if "ExchangeError" in names or "OperationFailed" in names or "BaseError" in names:
        # The exchange answered with an error we cannot name: nothing was placed.
        return port.LegFailed if placing_order else port.ExchangeError
    # Not a ccxt error at all (a parsing bug after the request went out, ...): assume the worst.
    return port.OutcomeUnknown if placing_order else port.ExchangeError


# Binance's "invalid API-key, IP, or permissions" code. Once an instance has authenticated, ccxt
# reports it as DDoSProtection (it assumes an IP ban), which would be retried forever.
_REVOKED_KEY_MARKERS = ("-2015", "Invalid API-key")


def revoked_credentials(class_names: Sequence[str], message: str) -> bool:
    """A "rate limit" that is really a key that stopped working: fail the run, don't retry."""
    return "DDoSProtection" in class_names and any(marker in message for marker in _REVOKED_KEY_MARKERS)


def safe_message(exchange_id: str, operation: str, exc: BaseException) -> str:
    """A log- and user-safe description: class name plus the masked, shortened message."""
    detail = redact_text(str(exc))
    if len(detail) > _MAX_MESSAGE:
        detail = detail[:_MAX_MESSAGE] + "…"
    return f"{exchange_id} {operation}: {type(exc).__name__}: {detail}"
