"""How a connection names the exchange account it trades (pure)."""

from __future__ import annotations

from services.common.exchanges.account_ref import (
    ACCOUNT_ID_CALL,
    account_uid_in_answer,
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


def test_okx_and_bybit_name_the_account_in_one_more_read() -> None:
    # Answers as the exchanges document them: a sub-account's own id, not its master's.
    okx = {"code": "0", "msg": "", "data": [{"uid": "44000002", "mainUid": "44000001", "level": "Lv1"}]}
    bybit = {"retCode": 0, "result": {"userID": 51000002, "parentUid": "51000001", "uta": 1}}
    assert account_uid_in_answer("okx", okx) == "44000002"
    assert account_uid_in_answer("bybit", bybit) == "51000002"
    assert account_uid_in_answer("okx", {"code": "0", "data": []}) is None
    assert account_uid_in_answer("okx", {"data": ["?"]}) is None
    assert account_uid_in_answer("bybit", {"result": {"userID": 0}}) is None  # no account is number 0
    assert account_uid_in_answer("bybit", {"result": None}) is None
    assert account_uid_in_answer("okx", bybit) is None and account_uid_in_answer("bybit", okx) is None
    assert account_uid_in_answer("kraken", okx) is None  # no such read
    # OKX's and Bybit's regional entities (ccxt subclasses of theirs) speak the same API.
    assert account_uid_in_answer("myokx", okx) == "44000002"
    assert account_uid_in_answer("bybiteu", bybit) == "51000002"
    assert set(ACCOUNT_ID_CALL) == {"okx", "bybit", "gate", "kucoin", "bitget"}
    kucoin = {"code": "200000", "data": {"apiKey": "k", "uid": 165111215, "isMaster": False}}
    assert account_uid_in_answer("kucoin", kucoin) == "165111215"
    bitget = {"code": "00000", "data": {"userId": "6130000002", "parentId": 6130000001}}
    assert account_uid_in_answer("bitget", bitget) == "6130000002"
    assert account_uid_in_answer("bitget", {"code": "00000", "data": []}) is None
    assert account_uid_in_answer("gate", {"user_id": 10406147, "ip_whitelist": [], "key": {"mode": 1}}) == "10406147"
    # Their balance answers name none.
    assert account_uid_in_balance("okx", {"data": [{"uid": "1"}]}) is None


def test_names_hold_digests_and_differ_by_address_and_kind() -> None:
    by_uid = exchange_account_uid_ref("binance", "42", api_url=None, sandbox=False)
    assert by_uid.startswith("binance:account:") and len(by_uid.removeprefix("binance:account:")) == 40
    assert by_uid != exchange_account_uid_ref("binance", "42", api_url=None, sandbox=True)
    assert by_uid != exchange_account_uid_ref("binance", "42", api_url="http://127.0.0.1:9", sandbox=False)
    assert by_uid != exchange_account_uid_ref("binance", "43", api_url=None, sandbox=False)
    by_key = exchange_account_ref("binance", "42", api_url=None, sandbox=False)
    assert by_key != by_uid and by_key == exchange_account_ref("binance", " 42 ", api_url=None, sandbox=False)
