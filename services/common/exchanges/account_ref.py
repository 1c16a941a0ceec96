"""Which exchange account a connection trades, as a stable name (``exchange_connections.account_ref``,
unique: migration 011).

The rules that keep an account to one live portfolio and one live run at a time key on the
connection, so a second connection to the same account would get around them. The paper exchange
trades the account it is given (``paper_account``, or the connection's id); an exchange is known
by the endpoint and the API key, which the name holds only as a digest.
"""

from __future__ import annotations

import hashlib

PAPER = "paper"


def paper_account_ref(account: str) -> str:
    return f"{PAPER}:{account}"


def exchange_account_ref(exchange_id: str, api_key: str, *, api_url: str | None, sandbox: bool) -> str:
    endpoint = f"{'sandbox' if sandbox else 'live'}|{api_url or ''}"
    digest = hashlib.sha256(f"{endpoint}|{api_key.strip()}".encode()).hexdigest()
    return f"{exchange_id}:{digest[:40]}"
