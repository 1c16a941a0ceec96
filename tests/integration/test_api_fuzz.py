"""Schemathesis over the API's own OpenAPI schema: no 5xx and no response that breaks the schema.

The API runs under uvicorn on a free port (its lifespan owns the pool and the bus in the test's
event loop); schemathesis sends its requests from a worker thread. Bounded: a few examples per
operation, well under a minute on two cores.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.integration.test_api_harness import api_fixture, paper_account  # noqa: F401
from tests.integration.test_cli import api_url  # noqa: F401

pytestmark = pytest.mark.integration
EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _fuzz(base_url: str, headers: dict[str, str], statuses: dict[int, int]) -> list[str]:
    raw = httpx.get(f"{base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema fails here loudly
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call(base_url=base_url, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as exc:  # collect and go on: one report for every operation
                failures.append(f"{case.method} {case.path}: {str(exc)[:400]}")

        check()
    assert operations >= 20, operations
    return failures


async def test_openapi_fuzz_finds_no_server_error(api_url: str, database_url: str, capsys) -> None:  # noqa: F811
    import asyncpg

    from services.api.accounts import create_token, ensure_user

    conn = await asyncpg.connect(database_url)
    try:
        user_id = await ensure_user(conn, "fuzz@example.com", "Fuzz", is_admin=True)
        token = await create_token(conn, user_id, "fuzz", ["user", "admin"])
    finally:
        await conn.close()
    headers = {"Authorization": f"Bearer {token}"}
    # Some real data for the reads to return.
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as client:
        await client.post("/api/v1/connections", json={"exchangeId": "paper", "paperAccount": paper_account("fuzz")})
        created = await client.post("/api/portfolios/manage", json={"name": "F", "targetWeights": {"BTC": 100}})
        assert created.status_code == 201
    statuses: dict[int, int] = {}
    failures = await asyncio.to_thread(_fuzz, api_url, headers, statuses)
    with capsys.disabled():
        print(f"\nfuzz: {sum(statuses.values())} requests, by status: {dict(sorted(statuses.items()))}")
    assert failures == [], "\n".join(failures[:20])
    assert sum(statuses.values()) >= 100
    assert any(200 <= code < 300 for code in statuses)  # not only rejections
