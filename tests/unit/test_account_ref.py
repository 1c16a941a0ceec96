"""How a connection names the exchange account it trades (pure)."""

from __future__ import annotations

from services.common.exchanges.account_ref import (
    account_uid_in_balance,
    exchange_account_ref,
    exchange_account_uid_ref,
)


def test_the_account_id_is_read_only_where_the_exchange_names_the_account() -> None:
    assert account_uid_in_balance("binance", {"uid": 354937868, "balances": []}) == "354937868"
    assert account_uid_in_balance("binance", {"balances": []}) is None
    assert account_uid_in_balance("binance", {"uid": ""}) is None
    assert account_uid_in_balance("binance", None) is None
    assert account_uid_in_balance("kraken", {"uid": 7}) is None  # a field it does not mean


def test_coinbase_names_the_portfolio_its_accounts_belong_to() -> None:
    def accounts(*portfolios: str | None) -> dict[str, object]:
        return {"accounts": [{"uuid": f"a{i}", "currency": "BTC", "retail_portfolio_id": p}
                             for i, p in enumerate(portfolios)], "has_next": False}

    for exchange_id in ("coinbase", "coinbaseadvanced"):
        assert account_uid_in_balance(exchange_id, accounts("p-1", "p-1", None)) == "p-1"
        assert account_uid_in_balance(exchange_id, accounts("p-1", "p-2")) is None  # a legacy key's many
        assert account_uid_in_balance(exchange_id, accounts()) is None
        assert account_uid_in_balance(exchange_id, {"accounts": "?"}) is None
        assert account_uid_in_balance(exchange_id, {"uid": 7}) is None
    # One account under either name of the exchange's API.
    assert exchange_account_uid_ref("coinbaseadvanced", "p-1", api_url=None, sandbox=False) == (
        exchange_account_uid_ref("coinbase", "p-1", api_url=None, sandbox=False))


def test_names_hold_digests_and_differ_by_address_and_kind() -> None:
    by_uid = exchange_account_uid_ref("binance", "42", api_url=None, sandbox=False)
    assert by_uid.startswith("binance:account:") and len(by_uid.removeprefix("binance:account:")) == 40
    assert by_uid != exchange_account_uid_ref("binance", "42", api_url=None, sandbox=True)
    assert by_uid != exchange_account_uid_ref("binance", "42", api_url="http://127.0.0.1:9", sandbox=False)
    assert by_uid != exchange_account_uid_ref("binance", "43", api_url=None, sandbox=False)
    by_key = exchange_account_ref("binance", "42", api_url=None, sandbox=False)
    assert by_key != by_uid and by_key == exchange_account_ref("binance", " 42 ", api_url=None, sandbox=False)
