"""The services run on uvloop unless EVENT_LOOP=asyncio; a wrong value is refused by name."""

from __future__ import annotations

import asyncio

import pydantic
import pytest
import uvloop

from services.common.runtime import _loop_factory
from services.common.settings import ServiceSettings


def test_uvloop_by_default_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_LOOP", raising=False)
    factory = _loop_factory(ServiceSettings().event_loop)
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert _loop_factory(ServiceSettings().event_loop) is None  # asyncio.Runner's own loop
    with asyncio.Runner(loop_factory=None) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)


def test_an_unknown_event_loop_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "trio")
    with pytest.raises(pydantic.ValidationError, match="event_loop"):
        ServiceSettings()
