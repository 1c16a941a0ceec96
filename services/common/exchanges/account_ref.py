"""Which exchange account a connection trades, as a stable name (``exchange_connections.account_ref``,
unique: migration 011).

The rules that keep an account to one live portfolio and one live run at a time key on the
connection, so a second connection to the same account would get around them. The paper exchange
trades the account it is given (``paper_account``, or the connection's id); an exchange is known
by the endpoint and the API key, which the name holds only as a digest. Where the exchange names
the account itself in its balance answer (Binance's ``uid``), a checked connection is also known
by that (``account_uid_ref``, unique: migration 014), so a second API key of the same account is
known as the same account.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

PAPER = "paper"


def paper_account_ref(account: str) -> str:
    return f"{PAPER}:{account}"


def exchange_account_ref(exchange_id: str, api_key: str, *, api_url: str | None, sandbox: bool) -> str:
    digest = hashlib.sha256(f"{_endpoint(api_url, sandbox)}|{api_key.strip()}".encode()).hexdigest()
    return f"{exchange_id}:{digest[:40]}"


# The field of an exchange's raw balance answer that names the account itself, where it has one.
ACCOUNT_ID_IN_BALANCE = {"binance": "uid"}


def account_uid_in_balance(exchange_id: str, info: Mapping[str, Any] | None) -> str | None:
    """The exchange's own id of the account a balance answer (ccxt's ``info``) belongs to, if it
    names one."""
    field = ACCOUNT_ID_IN_BALANCE.get(exchange_id)
    value = (info or {}).get(field) if field else None
    return str(value) if value not in (None, "") else None


def exchange_account_uid_ref(exchange_id: str, account_uid: str, *, api_url: str | None, sandbox: bool) -> str:
    digest = hashlib.sha256(f"{_endpoint(api_url, sandbox)}|uid|{account_uid}".encode()).hexdigest()
    return f"{exchange_id}:account:{digest[:40]}"


def _endpoint(api_url: str | None, sandbox: bool) -> str:
    return f"{'sandbox' if sandbox else 'live'}|{api_url or ''}"
