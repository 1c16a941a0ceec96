"""The fault suite: services as separate processes, killed, cut off and restarted.

Run it on its own with ``pytest -m faults``. When a test fails, the logs of the service
processes it ran are printed after the failure.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.processes import CREATED_STACKS

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if getattr(report, "failed", False):
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def service_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    seen = len(CREATED_STACKS)
    yield
    if request.node.stash.get(_FAILED, False):
        # The stacks this test created, plus the module's shared one (created before it).
        for stack in CREATED_STACKS[max(seen - 1, 0):]:
            print(f"\n===== service logs ({stack.log_dir}) =====\n{stack.logs()}")
