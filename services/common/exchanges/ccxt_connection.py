"""Checking a new exchange connection before it is saved: markets load, then credentials work."""

from __future__ import annotations

from typing import Literal

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import CcxtExchange

CheckFailure = Literal["unreachable", "markets", "credentials"]


class ConnectionCheckError(Exception):
    """Why a connection does not work, in words a user can act on (never with a secret)."""

    def __init__(self, reason: CheckFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def check_connection(exchange: CcxtExchange) -> str | None:
    """Raise ``ConnectionCheckError`` unless markets load and an authenticated call succeeds;
    returns the exchange's own id of the account, where its balance answer names one."""
    name = exchange.exchange_id
    try:
        markets = await exchange.load_markets()
    except port.AccountNotSupported as exc:
        raise ConnectionCheckError("credentials", str(exc)) from None
    except port.RunFailed as exc:
        # Some exchanges (Binance) load currencies with a signed call during load_markets.
        raise ConnectionCheckError(
            "credentials", f"{name} refused the API key: check the key, secret and passphrase ({exc})"
        ) from None
    except (port.RetryLater, port.OutcomeUnknown) as exc:
        raise ConnectionCheckError(
            "unreachable", f"{name} could not be reached: check the API URL or try again later ({exc})"
        ) from None
    except port.ExchangeError as exc:
        raise ConnectionCheckError("markets", f"{name} markets could not be loaded ({exc})") from None
    if not markets:
        raise ConnectionCheckError("markets", f"{name} returned no spot markets")
    try:
        await exchange.fetch_balance()
    except port.AccountNotSupported as exc:
        raise ConnectionCheckError("credentials", str(exc)) from None
    except port.RunFailed as exc:
        raise ConnectionCheckError(
            "credentials",
            f"{name} refused the API key: check the key, secret, passphrase and its permissions ({exc})",
        ) from None
    except (port.RetryLater, port.OutcomeUnknown) as exc:
        raise ConnectionCheckError(
            "unreachable", f"{name} could not be reached for the balance: try again later ({exc})"
        ) from None
    except port.ExchangeError as exc:
        raise ConnectionCheckError(
            "credentials", f"{name} did not accept an authenticated request ({exc})"
        ) from None
    return exchange.account_uid
