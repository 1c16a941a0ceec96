"""When a leg of unknown outcome that a look-up missed is sent again (services.executor.resend)."""

from __future__ import annotations

import math

import pytest

from services.executor.resend import AfterMiss, after_a_miss


def verdict(state: str = "sending", sent_ago: float = 120.0, *, finds: bool = True, at_once: bool = False) -> AfterMiss:
    return after_a_miss(state, sent_ago, finds_by_client_id=finds, lists_at_once=at_once, resend_after=60.0)


def test_a_leg_asked_for_by_its_client_id_is_sent_again_once_the_exchange_had_time_to_list_it():
    assert verdict(sent_ago=5.0) is AfterMiss.LOOK_AGAIN
    assert verdict(sent_ago=60.0) is AfterMiss.SEND
    assert verdict(sent_ago=math.inf) is AfterMiss.SEND  # sent before sending times were kept
    assert verdict(sent_ago=0.0, at_once=True) is AfterMiss.SEND  # the paper exchange: a miss is final


@pytest.mark.parametrize("sent_ago", [60.0, 3600.0, math.inf])
def test_a_leg_only_matched_in_a_page_of_the_newest_orders_is_never_sent_again(sent_ago: float):
    assert verdict(sent_ago=sent_ago, finds=False) is AfterMiss.LEAVE
    assert verdict(sent_ago=sent_ago, finds=False, at_once=True) is AfterMiss.LEAVE


def test_a_leg_only_matched_in_a_page_is_looked_up_again_while_it_may_not_be_listed_yet():
    assert verdict(sent_ago=59.9, finds=False) is AfterMiss.LOOK_AGAIN


@pytest.mark.parametrize("finds", [True, False])
def test_a_leg_the_exchange_showed_open_is_only_ever_looked_up_again(finds: bool):
    for sent_ago in (0.0, 60.0, math.inf):
        assert verdict("open", sent_ago, finds=finds) is AfterMiss.LOOK_AGAIN
        assert verdict("open", sent_ago, finds=finds, at_once=True) is AfterMiss.LOOK_AGAIN
