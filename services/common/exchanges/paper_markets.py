"""The paper exchange's default markets: real assets with realistic rules, plus synthetic ones.

Prices are a plausible snapshot, not live data. Rules follow Kraken/Binance in spirit: a minimum
cost of 10 USD on majors, amount steps that shrink as the price grows, maker 0.16% / taker 0.26%.
Synthetic assets ``A001``..``A150`` over USD let a benchmark build 100+ asset portfolios.
"""

from __future__ import annotations

import random
from decimal import Decimal

from services.common.exchanges.paper_rules import PaperMarket, round_to_step
from services.common.exchanges.port import Market

MAKER_FEE = Decimal("0.0016")
TAKER_FEE = Decimal("0.0026")
SYNTHETIC_ASSET_COUNT = 150


def paper_market(
    base: str,
    quote: str,
    price: str | Decimal,
    *,
    amount_step: str,
    price_step: str,
    min_amount: str | None = None,
    min_cost: str | None = "10",
) -> PaperMarket:
    step = Decimal(amount_step)
    return PaperMarket(
        Market(
            symbol=f"{base}/{quote}",
            base=base,
            quote=quote,
            min_amount=Decimal(min_amount) if min_amount is not None else step,
            min_cost=Decimal(min_cost) if min_cost is not None else None,
            amount_step=step,
            price_step=Decimal(price_step),
            maker_fee=MAKER_FEE,
            taker_fee=TAKER_FEE,
        ),
        round_to_step(Decimal(price), Decimal(price_step)),
    )


# (base, USD price, amount step, price step, minimum amount)
_USD_ASSETS: tuple[tuple[str, str, str, str, str], ...] = (
    ("BTC", "65000", "0.00000001", "0.1", "0.0001"),
    ("ETH", "3200", "0.00000001", "0.01", "0.002"),
    ("SOL", "150", "0.00001", "0.01", "0.02"),
    ("ADA", "0.45", "0.00000001", "0.000001", "10"),
    ("USDC", "1.0000", "0.01", "0.0001", "5"),
    ("USDT", "1.0000", "0.01", "0.0001", "5"),
    ("EUR", "1.08", "0.01", "0.0001", "5"),
    ("DOT", "6.50", "0.00000001", "0.0001", "0.5"),
    ("LINK", "14.20", "0.00001", "0.00001", "0.2"),
    ("AVAX", "30.50", "0.00001", "0.01", "0.1"),
    ("XRP", "0.55", "0.00000001", "0.00001", "10"),
    ("DOGE", "0.12", "0.00000001", "0.0000001", "50"),
    ("LTC", "80.00", "0.00000001", "0.01", "0.05"),
    ("BCH", "400.0", "0.00000001", "0.01", "0.01"),
    ("ATOM", "8.00", "0.00000001", "0.0001", "0.5"),
    ("UNI", "7.00", "0.00000001", "0.001", "0.5"),
    ("XLM", "0.10", "0.00000001", "0.000001", "20"),
    ("TRX", "0.12", "0.000001", "0.000001", "50"),
    ("NEAR", "5.00", "0.00000001", "0.001", "1"),
    ("AAVE", "100.0", "0.0001", "0.01", "0.02"),
    ("MATIC", "0.70", "0.00000001", "0.0001", "10"),
    ("ALGO", "0.18", "0.00000001", "0.00001", "20"),
    ("FIL", "5.50", "0.00000001", "0.001", "1"),
    ("ETC", "25.0", "0.00000001", "0.001", "0.2"),
)


_CASH_LIKE = frozenset({"USDC", "USDT", "EUR"})


def _usd_markets() -> list[PaperMarket]:
    return [
        paper_market(base, "USD", price, amount_step=step, price_step=tick, min_amount=minimum,
                     min_cost="5" if base in _CASH_LIKE else "10")
        for base, price, step, tick, minimum in _USD_ASSETS
    ]


def _usd_price(base: str) -> Decimal:
    return next(Decimal(price) for asset, price, *_ in _USD_ASSETS if asset == base)


def _cross(base: str, quote: str, *, amount_step: str, price_step: str, min_cost: str) -> PaperMarket:
    price = _usd_price(base) / _usd_price(quote)
    return paper_market(base, quote, price, amount_step=amount_step, price_step=price_step,
                        min_cost=min_cost)


def _cross_markets() -> list[PaperMarket]:
    return [
        _cross("ETH", "BTC", amount_step="0.00000001", price_step="0.00001", min_cost="0.0001"),
        _cross("SOL", "BTC", amount_step="0.00001", price_step="0.0000001", min_cost="0.0001"),
        _cross("LINK", "ETH", amount_step="0.00001", price_step="0.000001", min_cost="0.003"),
        _cross("BTC", "EUR", amount_step="0.00000001", price_step="0.1", min_cost="10"),
        _cross("ETH", "EUR", amount_step="0.00000001", price_step="0.01", min_cost="10"),
        _cross("USDC", "EUR", amount_step="0.01", price_step="0.0001", min_cost="5"),
        _cross("BTC", "USDT", amount_step="0.00000001", price_step="0.1", min_cost="10"),
        _cross("ETH", "USDT", amount_step="0.00000001", price_step="0.01", min_cost="10"),
        _cross("SOL", "USDT", amount_step="0.00001", price_step="0.01", min_cost="10"),
        _cross("EUR", "USDT", amount_step="0.01", price_step="0.0001", min_cost="5"),
        _cross("USDC", "USDT", amount_step="0.01", price_step="0.0001", min_cost="5"),
    ]


def synthetic_asset(index: int) -> str:
    return f"A{index:03d}"


def synthetic_markets(count: int = SYNTHETIC_ASSET_COUNT, seed: int = 20_240_601) -> list[PaperMarket]:
    """``A001/USD``..: prices spread from cents to thousands, rules scaled to each price."""
    rng = random.Random(seed)
    markets: list[PaperMarket] = []
    for index in range(1, count + 1):
        exponent = rng.randint(-2, 3)  # 0.01 .. 9999
        price = Decimal(rng.randint(100, 999)).scaleb(exponent - 2)
        amount_step = Decimal(1).scaleb(-(exponent + 4))  # finer steps for dearer assets
        price_step = Decimal(1).scaleb(exponent - 4)
        markets.append(paper_market(
            synthetic_asset(index), "USD", price,
            amount_step=str(amount_step), price_step=str(price_step),
            min_amount=str(amount_step), min_cost="5",
        ))
    return markets


DEFAULT_MARKETS: tuple[PaperMarket, ...] = (*_usd_markets(), *_cross_markets(), *synthetic_markets())
