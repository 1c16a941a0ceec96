"""Pointing a ccxt exchange at a custom base URL (testnets, fake servers).

``urls['api']`` differs per exchange: a string, a flat map (Kraken ``public``/``private``), a big
map (Binance ``public``, ``sapi``, ``fapiPublic`` ...) or nested maps. Every string in it is
rewritten to the custom scheme and host, keeping its path, so that no request can still go to the
real host. Pure: no ccxt import.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit


def _rewrite_one(url: str, base: str) -> str:
    target = urlsplit(base)
    original = urlsplit(url)
    path = target.path.rstrip("/") + original.path
    return urlunsplit((target.scheme, target.netloc, path, original.query, original.fragment))


def rewrite_api_urls(api: Any, base: str) -> Any:
    """``api`` with every URL string moved to ``base`` (``http://127.0.0.1:8080[/prefix]``)."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"custom API URL must be http(s)://host[:port][/path], got {base!r}")
    if isinstance(api, str):
        return _rewrite_one(api, base)
    if isinstance(api, dict):
        return {key: rewrite_api_urls(value, base) for key, value in api.items()}
    if isinstance(api, list):
        return [rewrite_api_urls(value, base) for value in api]
    return api


def iter_api_urls(api: Any) -> list[str]:
    """Every URL string in an ``urls['api']`` structure (for checks and tests)."""
    if isinstance(api, str):
        return [api]
    if isinstance(api, dict):
        return [url for value in api.values() for url in iter_api_urls(value)]
    if isinstance(api, list):
        return [url for value in api for url in iter_api_urls(value)]
    return []
