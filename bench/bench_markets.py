"""Many accounts on one exchange: what their first calls cost with markets shared per process
(``ccxt_shared_markets``) and with each account's ccxt client loading its own.

ccxt's real Binance class, one client per account, against the fake Binance on 127.0.0.1 serving
``--markets`` spot markets (Binance lists ~3,000). Every account makes its first call, a balance
read, all at once. Prints the markets requests sent, the wall and CPU time, and the memory the
clients hold afterwards (tracemalloc, in a second pass).

Run: .venv/bin/python -m bench.bench_markets --accounts 100 --markets 1000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.ccxt_shared_markets import Key, SharedMarkets
from services.common.secrets import Credentials
from tests.fakes.binance import FakeBinance, start_fake_binance
from tests.fakes.engine import ExchangeState, FakeMarket

MARKETS_PATH = "/api/v3/exchangeInfo"


class OwnMarkets(SharedMarkets):
    """Each client loads its own markets: how it was before they were shared."""

    async def share_into(self, key: Key, client: Any, load_own: Callable[[], Awaitable[None]]) -> None:
        await load_own()


def state_with(markets: int) -> ExchangeState:
    bases = [f"C{i:04d}" for i in range(markets - 1)] + ["BTC"]
    listed = {m.symbol: m for m in (FakeMarket(base, "USDT") for base in bases)}
    return ExchangeState(
        markets=listed,
        prices={symbol: Decimal("1") for symbol in listed},
        balances={"BTC": Decimal("0.5"), "USDT": Decimal("10000")},
        fee_rate=Decimal("0.001"),
    )


async def first_calls(fake: FakeBinance, accounts: int, shared: SharedMarkets, *, traced: bool) -> dict[str, float]:
    """Every account's first call at once; ``traced``: the memory the clients hold afterwards
    (tracemalloc slows Python down, so times are read from an untraced pass)."""
    credentials = Credentials(api_key=fake.api_key, secret=fake.secret)
    before = len([r for r in fake.requests if r.path == MARKETS_PATH])
    gc.collect()
    if traced:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    clients = [
        # The fake answers in this process: a hundred markets loads at once outlast ccxt's 10 s.
        CcxtExchange("binance", credentials, api_url=fake.url, rate_limit_ms=1, timeout_ms=300_000,
                     shared_markets=shared)
        for _ in range(accounts)
    ]
    try:
        await asyncio.gather(*(c.fetch_balance() for c in clients))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        held = 0
        if traced:
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await asyncio.gather(*(c.close() for c in clients))
    requests = len([r for r in fake.requests if r.path == MARKETS_PATH]) - before
    return {"requests": requests, "wall_s": wall, "cpu_s": cpu, "held_mb": held / 2**20}


async def main(args: argparse.Namespace) -> None:
    print(f"{args.accounts} accounts on one exchange of {args.markets} markets, first call of each at once")
    print(f"{'markets':<10}{'requests':>10}{'wall s':>10}{'CPU s':>10}{'held MB':>10}")
    for name, kind in (("own", OwnMarkets), ("shared", SharedMarkets)):
        async with start_fake_binance(state_with(args.markets)) as fake:
            timed = await first_calls(fake, args.accounts, kind(), traced=False)
        async with start_fake_binance(state_with(args.markets)) as fake:
            traced = await first_calls(fake, args.accounts, kind(), traced=True)
        print(f"{name:<10}{timed['requests']:>10.0f}{timed['wall_s']:>10.2f}{timed['cpu_s']:>10.2f}"
              f"{traced['held_mb']:>10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--markets", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
