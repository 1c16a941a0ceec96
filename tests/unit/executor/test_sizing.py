"""The executor's buy sizing: buys paid in the portfolio's quote are scaled to the quote actually on
hand after the sells (prices move between planning and filling), never spending more than is there."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, note, settings
from hypothesis import strategies as st

from contracts.v1 import PlannedOrder
from services.common.exchanges.port import Market
from services.executor.sizing import FUNDING_MARGIN, MIN_MARGIN, SizedLeg, buy_cost, size_buys

D = Decimal
BASES = ["BTC", "ETH", "SOL", "ADA", "DOT", "XRP"]


def buy(leg: int, base: str, amount: str, price: str, fee_rate: str = "0.001") -> PlannedOrder:
    value = D(amount) * D(price)
    return PlannedOrder(
        leg=leg, symbol=f"{base}/USD", base=base, quote="USD", side="buy",
        amount=D(amount), price=D(price), value=value, fee=value * D(fee_rate),
    )


def usd_market(base: str, **rules: Decimal | None) -> Market:
    return Market(symbol=f"{base}/USD", base=base, quote="USD", **rules)  # type: ignore[arg-type]


def placed(sized: list[SizedLeg]) -> list[tuple[str, Decimal]]:
    return [(leg.order.base, leg.amount) for leg in sized if not leg.dropped]


def test_affordable_buys_keep_their_planned_amounts() -> None:
    buys = [buy(2, "BTC", "0.1", "50000"), buy(3, "ETH", "2", "2500")]
    markets = {"BTC/USD": usd_market("BTC"), "ETH/USD": usd_market("ETH")}
    # 10,010 USD of buys with fees; 10,100 USD on hand keeps the 0.5 % margin.
    sized = size_buys(buys, D(10100), markets)
    assert placed(sized) == [("BTC", D("0.1")), ("ETH", D(2))]


def test_buys_short_of_cash_are_scaled_together_to_their_steps() -> None:
    # The sells brought in 8,000 USD instead of 10,000: every buy shrinks by the same factor,
    # truncated to its step, so the account is never asked for more than it holds.
    buys = [buy(2, "BTC", "0.1", "50000", "0"), buy(3, "ETH", "2", "2500", "0")]
    markets = {
        "BTC/USD": usd_market("BTC", amount_step=D("0.001"), taker_fee=D(0)),
        "ETH/USD": usd_market("ETH", amount_step=D("0.01"), taker_fee=D(0)),
    }
    sized = size_buys(buys, D(8000), markets)
    # Budget 8,000 x 0.995 = 7,960 of 10,000 needed: factor 0.796.
    assert placed(sized) == [("BTC", D("0.079")), ("ETH", D("1.59"))]
    assert sum(leg.amount * leg.order.price for leg in sized) <= D(7960)


def test_a_buy_scaled_below_its_minimum_is_dropped_with_the_reason() -> None:
    buys = [buy(2, "BTC", "0.1", "50000", "0"), buy(3, "ADA", "40", "0.5", "0")]
    markets = {
        "BTC/USD": usd_market("BTC", taker_fee=D(0)),
        "ADA/USD": usd_market("ADA", min_cost=D(10), amount_step=D(1), taker_fee=D(0)),
    }
    # Half the cash: ADA's 20 USD buy becomes 9.95 USD, under the 10 USD minimum (with its margin).
    sized = size_buys(buys, D(2510), markets)
    [ada] = [leg for leg in sized if leg.order.base == "ADA"]
    assert ada.dropped == (
        "ADA buy of 9.50 USD is below the exchange minimum of 10 USD after sizing to the USD on hand"
    )
    assert placed(sized) == [("BTC", D("0.04975"))]


def test_a_buy_scaled_to_just_above_its_minimum_is_dropped_too_as_the_price_may_move() -> None:
    # ADA's 21 USD buy becomes 20 ADA = 10.00 USD: at the 10 USD minimum, not 1 % above it, so a
    # small price move before the fill would have the exchange refuse it.
    buys = [buy(2, "BTC", "0.1", "50000", "0"), buy(3, "ADA", "42", "0.5", "0")]
    markets = {
        "BTC/USD": usd_market("BTC", taker_fee=D(0)),
        "ADA/USD": usd_market("ADA", min_cost=D(10), amount_step=D(1), taker_fee=D(0)),
    }
    sized = size_buys(buys, D("2510.5"), markets)
    [ada] = [leg for leg in sized if leg.order.base == "ADA"]
    assert ada.amount == 20
    assert ada.dropped == (
        "ADA buy of 10.00 USD is below the exchange minimum of 10 USD with the 1 % kept above it for "
        "price moves after sizing to the USD on hand"
    )


def test_no_cash_at_all_places_nothing_and_says_so() -> None:
    buys = [buy(2, "BTC", "0.1", "50000")]
    for available in (D(0), D(-25)):  # a cash reserve above the balance leaves a negative budget
        [leg] = size_buys(buys, available, {"BTC/USD": usd_market("BTC")})
        assert leg.amount == 0
        assert leg.dropped == "BTC buy scaled to nothing: not enough USD after the sells"


# ------------------------------------------------------------------------------------- properties
@dataclass
class Case:
    buys: list[PlannedOrder]
    markets: dict[str, Market]
    available: Decimal

    def needed(self) -> Decimal:
        return sum(
            (buy_cost(o, self.markets[o.symbol].taker_fee if o.symbol in self.markets else D(0)) for o in self.buys),
            D(0),
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    bases = draw(st.lists(st.sampled_from(BASES), min_size=1, max_size=len(BASES), unique=True))
    buys: list[PlannedOrder] = []
    markets: dict[str, Market] = {}
    for leg, base in enumerate(bases):
        step = draw(st.sampled_from([None, D("0.00000001"), D("0.001"), D("0.1"), D(1)]))
        price = draw(st.decimals(D("0.01"), D(60000), places=2))
        units = draw(st.integers(1, 10**6))
        amount = units * step if step else draw(st.decimals(D("0.00000001"), D(1000), places=8))
        fee_rate = draw(st.sampled_from([D(0), D("0.001"), D("0.0026")]))
        buys.append(buy(leg, base, str(amount), str(price), str(fee_rate)))
        if draw(st.booleans()) or leg == 0:  # now and then a market the exchange no longer lists
            markets[f"{base}/USD"] = usd_market(
                base,
                amount_step=step,
                taker_fee=fee_rate,
                min_amount=draw(st.sampled_from([None, D("0.0001"), D(1)])),
                min_cost=draw(st.sampled_from([None, D(1), D(10)])),
            )
    case = Case(buys, markets, D(0))
    # Anywhere from a negative budget (a reserve above the balance) to twice what the buys need.
    case.available = (case.needed() * draw(st.decimals(D("-0.1"), D(2), places=4))).quantize(D("0.01"))
    return case


@settings(max_examples=500, deadline=None)
@given(cases())
def test_sized_buys_never_spend_more_than_is_on_hand_or_more_than_planned(case: Case) -> None:
    note(repr(case))
    sized = size_buys(case.buys, case.available, case.markets)
    assert [leg.order for leg in sized] == case.buys  # one answer per buy, in order
    budget = max(case.available, D(0)) * (1 - FUNDING_MARGIN)
    spent = sum((buy_cost(leg.order, _fee(case, leg.order), leg.amount) for leg in sized if not leg.dropped), D(0))
    assert spent <= budget * (1 + D("1e-20"))  # 28-digit arithmetic may round the last digit up
    for leg in sized:
        assert D(0) <= leg.amount <= leg.order.amount
        if leg.dropped:
            continue
        assert leg.amount > 0
        if leg.amount == leg.order.amount:
            continue
        # Scaled: on the market's step and above its minimums with the margin the executor keeps.
        market = case.markets.get(leg.order.symbol)
        if market is None:
            continue
        if market.amount_step:
            assert leg.amount % market.amount_step == 0
        if market.min_amount:
            assert leg.amount >= market.min_amount * MIN_MARGIN
        if market.min_cost:
            assert leg.amount * leg.order.price >= market.min_cost * MIN_MARGIN


@settings(max_examples=300, deadline=None)
@given(cases())
def test_buys_are_scaled_only_when_the_cash_falls_short_and_then_all_by_one_factor(case: Case) -> None:
    note(repr(case))
    sized = size_buys(case.buys, case.available, case.markets)
    budget = case.available * (1 - FUNDING_MARGIN)
    needed = case.needed()
    if needed <= budget:
        assert all(leg.amount == leg.order.amount and not leg.dropped for leg in sized)
        return
    factor = max(budget, D(0)) / needed
    for leg in sized:
        market = case.markets.get(leg.order.symbol)
        scaled = leg.order.amount * factor
        if market and market.amount_step:
            # Truncation to the step costs less than one step; no buy is cut deeper than the rest.
            assert scaled - market.amount_step < leg.amount <= scaled
        else:
            assert leg.amount == scaled


def _fee(case: Case, order: PlannedOrder) -> Decimal:
    market = case.markets.get(order.symbol)
    return market.taker_fee if market else D(0)
