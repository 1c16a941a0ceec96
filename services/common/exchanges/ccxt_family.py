"""Which exchange's API an exchange id speaks, for the rules written per exchange (order look-ups,
the account's id, client order ids, market options).

ccxt serves an exchange's regional entities as subclasses of its class (``myokx`` and ``okxus`` of
``okx``, ``bybiteu`` and ``bybitid`` of ``bybit``): the same API at other hosts, and other accounts.
The rules that hold for the API hold for them too; a rule keyed on the id alone would send them
down the generic path (orders matched in a page of the newest, markets of every type).
"""

from __future__ import annotations

from functools import cache

# The exchanges whose rules are written for their API, by ccxt class name.
FAMILIES = frozenset({"okx", "bybit"})


@cache
def family(exchange_id: str) -> str:
    """``exchange_id``'s family in ``FAMILIES`` when its ccxt class is that one or derives from it;
    else the id itself."""
    import ccxt.async_support as ccxt_async

    exchange_class = getattr(ccxt_async, exchange_id, None) if exchange_id in ccxt_async.exchanges else None
    for base in exchange_class.__mro__ if exchange_class is not None else ():
        if base.__name__ in FAMILIES:
            return str(base.__name__)
    return exchange_id
