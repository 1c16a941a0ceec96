"""Which live portfolio keeps an exchange account that several share.

A portfolio rebalances its whole account, so two live portfolios on one connection undo each
other's trades. The API refuses a second, but connections that had several before keep them: the
oldest (by creation, then id) keeps the account, and the others' live runs are refused. The
scheduler's claims, the API's live triggers and the API's ``accountKeptBy`` all ask it here, so
they cannot disagree on who that is.
"""

from __future__ import annotations


def first_live_beside(*, or_any_when: str | None = None) -> str:
    """SQL from ``FROM`` to ``LIMIT 1`` that picks, for the portfolios row aliased ``p``, the live
    portfolio ``o`` keeping its account: the first live one on the same connection made before
    ``p`` (or, while the SQL condition ``or_any_when`` holds, any other live one). Looked up by
    migration 016's index."""
    made_before = "(o.created_at, o.id) < (p.created_at, p.id)"
    which = made_before if or_any_when is None else f"({or_any_when} OR {made_before})"
    return (
        "FROM portfolios o WHERE o.connection_id = p.connection_id AND o.id <> p.id AND NOT o.dry_run"
        f" AND {which} ORDER BY o.created_at, o.id LIMIT 1"
    )
