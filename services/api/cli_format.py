"""Readable tables for the CLI (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_text(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` are (key, header) pairs."""
    cells = [[_text(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def key_values(item: Mapping[str, Any]) -> str:
    width = max((len(k) for k in item), default=0)
    return "\n".join(f"{k.ljust(width)}  {_text(v)}" for k, v in item.items())


def parse_weights(raw: str) -> dict[str, str]:
    """``"BTC=40,ETH=30"`` (or ``BTC:40``) -> ``{"BTC": "40", "ETH": "30"}``; the API validates."""
    weights: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        sep = "=" if "=" in part else ":"
        asset, _, value = part.partition(sep)
        if not value:
            raise ValueError(f"{part!r}: write weights as ASSET=PERCENT, like BTC=40,ETH=60")
        weights[asset.strip()] = value.strip()
    return weights
