"""Which exchange account a connection trades, as a stable name (``exchange_connections.account_ref``,
unique: migration 011).

The rules that keep an account to one live portfolio and one live run at a time key on the
connection, so a second connection to the same account would get around them. The paper exchange
trades the account it is given (``paper_account``, or the connection's id); an exchange is known
by the endpoint and the API key, which the name holds only as a digest. Where the exchange names
the account itself, in its balance answer (Binance's ``uid``, the portfolio Coinbase's accounts
belong to) or in one more call (OKX's account configuration, Bybit's API-key information), a
checked connection is also known by that (``account_uid_ref``, unique: migration 014), so a second
API key of the same account is known as the same account.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from services.common.exchanges.ccxt_family import family

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
def _okx_config_uid(answer: Mapping[str, Any]) -> Any:
    """OKX's ``GET /api/v5/account/config``: ``uid`` is the (sub-)account's own id; ``mainUid``
    would name the master account, which its sub-accounts share."""
    data = answer.get("data")
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else {}
    return first.get("uid")


def _bybit_key_user(answer: Mapping[str, Any]) -> Any:
    """Bybit's ``GET /v5/user/query-api``: ``userID`` is the account the key belongs to (a
    sub-account's own id; ``parentUid`` would be its master's)."""
    result = answer.get("result")
    return result.get("userID") if isinstance(result, Mapping) else None


# Where the balance answer names no account but one more read does: ccxt's implicit method, and
# where its answer names the account.
def _gate_user(answer: Mapping[str, Any]) -> Any:
    """Gate's ``GET /api/v4/account/detail``: ``user_id`` is the account the key belongs to."""
    return answer.get("user_id")


def _kucoin_key_user(answer: Mapping[str, Any]) -> Any:
    """KuCoin's ``GET /api/v1/user/api-key``: ``uid`` is the account the key belongs to."""
    data = answer.get("data")
    return data.get("uid") if isinstance(data, Mapping) else None


def _bitget_user(answer: Mapping[str, Any]) -> Any:
    """Bitget's ``GET /api/v2/spot/account/info``: ``userId`` is the account the key belongs to
    (``parentId`` would be a sub-account's master)."""
    data = answer.get("data")
    return data.get("userId") if isinstance(data, Mapping) else None


ACCOUNT_ID_CALL: dict[str, tuple[str, Callable[[Mapping[str, Any]], Any]]] = {
    "okx": ("privateGetAccountConfig", _okx_config_uid),
    "bybit": ("privateGetV5UserQueryApi", _bybit_key_user),
    "gate": ("privateAccountGetDetail", _gate_user),
    "kucoin": ("privateGetUserApiKey", _kucoin_key_user),
    "bitget": ("privateSpotGetV2SpotAccountInfo", _bitget_user),
}
# Exchange ids that are one exchange's API under two names: an account is the same under either.
_SAME_EXCHANGE = {"coinbaseadvanced": "coinbase"}


def account_uid_in_balance(exchange_id: str, info: Mapping[str, Any] | None) -> str | None:
    """The exchange's own id of the account a balance answer (ccxt's ``info``) belongs to, if it
    names one."""
    read = ACCOUNT_ID_IN_BALANCE.get(exchange_id)
    return _named(read(info) if read is not None and info else None)


def account_id_call(exchange_id: str) -> tuple[str, Callable[[Mapping[str, Any]], Any]] | None:
    """The read that names the account on ``exchange_id``'s API (its regional entities' too)."""
    return ACCOUNT_ID_CALL.get(exchange_id) or ACCOUNT_ID_CALL.get(family(exchange_id))


def account_uid_in_answer(exchange_id: str, answer: Mapping[str, Any] | None) -> str | None:
    """The exchange's own id of the account, from the answer to its ``ACCOUNT_ID_CALL``."""
    call = account_id_call(exchange_id)
    return _named(call[1](answer) if call is not None and isinstance(answer, Mapping) else None)


def _named(value: Any) -> str | None:
    # No exchange numbers an account 0; a 0 or an empty id means the answer named none.
    return str(value) if value not in (None, "", 0, "0") else None


def exchange_account_uid_ref(exchange_id: str, account_uid: str, *, api_url: str | None, sandbox: bool) -> str:
    digest = hashlib.sha256(f"{_endpoint(api_url, sandbox)}|uid|{account_uid}".encode()).hexdigest()
    return f"{_SAME_EXCHANGE.get(exchange_id, exchange_id)}:account:{digest[:40]}"


def _endpoint(api_url: str | None, sandbox: bool) -> str:
    return f"{'sandbox' if sandbox else 'live'}|{api_url or ''}"
