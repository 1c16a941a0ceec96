"""Which exchange account a connection trades, as a stable name (``exchange_connections.account_ref``,
unique: migration 011).

The rules that keep an account to one live portfolio and one live run at a time key on the
connection, so a second connection to the same account would get around them. The paper exchange
trades the account it is given (``paper_account``, or the connection's id); an exchange is known
by the endpoint and the API key, which the name holds only as a digest. Where the exchange names
the account itself in its balance answer (Binance's ``uid``, the portfolio Coinbase's accounts
belong to), a checked connection is also known by that (``account_uid_ref``, unique: migration
014), so a second API key of the same account is known as the same account.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

PAPER = "paper"


def paper_account_ref(account: str) -> str:
    return f"{PAPER}:{account}"


def exchange_account_ref(exchange_id: str, api_key: str, *, api_url: str | None, sandbox: bool) -> str:
    digest = hashlib.sha256(f"{_endpoint(api_url, sandbox)}|{api_key.strip()}".encode()).hexdigest()
    return f"{exchange_id}:{digest[:40]}"


def _binance_uid(info: Mapping[str, Any]) -> Any:
    return info.get("uid")


def _coinbase_portfolio(info: Mapping[str, Any]) -> Any:
    """Coinbase's balances are a portfolio's (a key is scoped to one): every account listed names
    it as ``retail_portfolio_id``. Accounts of several portfolios (a legacy key) name none."""
    accounts = info.get("accounts")
    if not isinstance(accounts, list):
        return None
    named = {a.get("retail_portfolio_id") for a in accounts if isinstance(a, Mapping)} - {None, ""}
    return named.pop() if len(named) == 1 else None


# Where an exchange's raw balance answer (ccxt's ``info``) names the account itself.
ACCOUNT_ID_IN_BALANCE: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "binance": _binance_uid,
    "coinbase": _coinbase_portfolio,
    "coinbaseadvanced": _coinbase_portfolio,
}
# Exchange ids that are one exchange's API under two names: an account is the same under either.
_SAME_EXCHANGE = {"coinbaseadvanced": "coinbase"}


def account_uid_in_balance(exchange_id: str, info: Mapping[str, Any] | None) -> str | None:
    """The exchange's own id of the account a balance answer (ccxt's ``info``) belongs to, if it
    names one."""
    read = ACCOUNT_ID_IN_BALANCE.get(exchange_id)
    value = read(info) if read is not None and info else None
    return str(value) if value not in (None, "") else None


def exchange_account_uid_ref(exchange_id: str, account_uid: str, *, api_url: str | None, sandbox: bool) -> str:
    digest = hashlib.sha256(f"{_endpoint(api_url, sandbox)}|uid|{account_uid}".encode()).hexdigest()
    return f"{_SAME_EXCHANGE.get(exchange_id, exchange_id)}:account:{digest[:40]}"


def _endpoint(api_url: str | None, sandbox: bool) -> str:
    return f"{'sandbox' if sandbox else 'live'}|{api_url or ''}"
