"""Bitget's unified accounts: reading an order as Bitget states it, where ccxt misreads it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.common.exchanges.ccxt_bitget import is_unified, market_buy_params, mended_order, says_order_not_found
from services.common.exchanges.ccxt_markets import order_from_ccxt


def unified_order(**info: Any) -> dict[str, Any]:
    """An order as ccxt 4.5.90 parses a filled v3 market sell of 0.01 BTC at 60000 (fee 0.6 USDT)."""
    stated = {
        "orderId": "1", "orderType": "market", "side": "sell", "qty": "0.01", "cumExecQty": "0.01",
        "cumExecValue": "600", "avgPrice": "60000", "orderStatus": "filled",
        "feeDetail": [{"feeCoin": "USDT", "fee": "0.6"}], **info,
    }
    return {
        "id": "1", "symbol": "BTC/USDT", "type": "market", "side": "sell", "status": "closed", "amount": 0.01,
        "filled": 0.01, "average": None, "cost": None, "fee": {"cost": -0.6, "currency": None},
        "fees": [{"cost": -0.6, "currency": None}], "info": stated,
    }


def test_a_unified_orders_fill_and_fee_are_read_as_bitget_states_them() -> None:
    result = order_from_ccxt(
        mended_order(unified_order()), client_order_id="c", symbol="BTC/USDT", side="sell", amount=Decimal("0.01")
    )
    assert (result.filled, result.average_price, result.cost) == (Decimal("0.01"), Decimal(60000), Decimal(600))
    assert (result.fee, result.fee_currency) == (Decimal("0.6"), "USDT")


def test_a_buys_fee_in_the_coin_it_buys_keeps_that_coin() -> None:
    mended = mended_order(unified_order(side="buy", feeDetail=[{"feeCoin": "BTC", "fee": "0.00001"}]))
    assert mended["fee"] == {"cost": Decimal("0.00001"), "currency": "BTC"}


def test_an_order_with_nothing_filled_has_no_price_and_no_fee() -> None:
    mended = mended_order(unified_order(cumExecQty="0", cumExecValue="0", avgPrice="0",
                                        feeDetail=[{"feeCoin": None, "fee": None}]))
    assert (mended["filled"], mended["cost"], mended["average"]) == (Decimal(0), Decimal(0), None)
    assert (mended["fee"], mended["fees"]) == (None, [])


def test_an_order_not_in_bitgets_v3_shape_is_left_as_ccxt_read_it() -> None:
    classic = {"id": "1", "filled": 0.01, "fee": {"cost": 0.6, "currency": "USDT"}, "info": {"priceAvg": "60000"}}
    assert mended_order(classic) == classic
    assert mended_order({"id": "2", "info": None}) == {"id": "2", "info": None}


def test_bitgets_order_not_found_code_is_told_apart_from_other_errors() -> None:
    assert says_order_not_found('bitget {"code": "25204", "msg": "Order does not exist", "data": null}')
    assert says_order_not_found("bitget 25204 Order does not exist")
    assert not says_order_not_found('bitget {"code": "25611", "msg": "Order quantity must be greater"}')
    assert not says_order_not_found('bitget {"code": "40085", "requestTime": 1796252041234}')
    assert not says_order_not_found('bitget {"code": "40085", "requestTime": 1796125204 }')


def test_a_market_buy_is_sent_as_what_it_spends_on_a_unified_account_only() -> None:
    assert market_buy_params("600") == {"qty": "600"}
    assert is_unified({"uta": True})
    assert not is_unified({"uta": False}) and not is_unified({})
