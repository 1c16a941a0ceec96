"""Whether a leg that may already be on the exchange, and that a look-up by its client order id has
just missed, is sent again.

A miss proves the exchange does not have the order only where the exchange is asked for that very
order (by its client id, or a listing filtered by it) or shows every order since the run began
(``order_lookup``), and has had time to list it. Elsewhere the
look-up matches the client id in a page of the account's newest orders, and a busy account's order
can be past the page: sending it again there could trade twice. Such a leg is never sent again: the
run stops, the reconciler goes on looking for the order, and the portfolio's next run values the
account afresh, so it trades whatever the leg did not.
"""

from __future__ import annotations

from enum import Enum


class AfterMiss(Enum):
    LOOK_AGAIN = "look_again"  # the run is retried, and looks the leg up again
    SEND = "send"  # the exchange does not have it: sent again, under the same client id
    LEAVE = "leave"  # never sent again: the run stops, the leg is left to the reconciler


def after_a_miss(
    state: str,
    sent_ago: float,
    *,
    finds_by_client_id: bool,
    lists_at_once: bool,
    resend_after: float,
) -> AfterMiss:
    """What to do with a leg of unknown outcome (``state`` 'sending' or 'open', last sent
    ``sent_ago`` seconds ago) that a look-up did not find, on an exchange that is asked for an order
    by its client id (``finds_by_client_id``) or only matches it in a page, and lists new orders at
    once (``lists_at_once``) or may take a while (``resend_after`` seconds at most)."""
    if state == "open":
        # The exchange showed it open: it exists, whatever a look-up says now (closed orders are
        # listed for a while only), and its client id may be reused once it is closed.
        return AfterMiss.LOOK_AGAIN
    if not lists_at_once and sent_ago < resend_after:
        return AfterMiss.LOOK_AGAIN  # it may have been placed moments ago and not be listed yet
    return AfterMiss.SEND if finds_by_client_id else AfterMiss.LEAVE
