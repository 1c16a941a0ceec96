"""Poison messages: dead-lettered with their reason, counted, terminated after bounded
redeliveries, and never in the way of the messages behind them."""

from __future__ import annotations

import json
import tempfile
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest

from services.common.devstack import free_port
from tests.faults.helpers import eventually
from tests.support.pipeline import delete_stream, due_event, publish, seed_portfolio
from tests.support.processes import Stack, service_env, shorten_ack_waits

pytestmark = pytest.mark.faults


def scrape(port: int) -> dict[str, float]:
    """The dead-letter counters of a service's /metrics, by (consumer, reason)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("rebalancer_dead_letters_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels] = float(value)
    return found


async def test_poison_messages_are_dead_lettered_counted_and_block_nothing(
    database_url: str, nats_url: str, db_pool: asyncpg.Pool, namespace: str
) -> None:
    ops_port = free_port()
    env = service_env(nats_url=nats_url, database_url=database_url, namespace=namespace,
                      extra={"OPS_PORT": str(ops_port), "MAX_ATTEMPTS": "3"})
    stack = Stack(env, Path(tempfile.mkdtemp(prefix="rebalancer-poison-")))
    subject = f"{namespace}.v1.evt.rebalance.due"
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "ETH": 50}, balances={"USD": "1000"})
    good = due_event(seeded)
    valid = json.loads(good.model_dump_json())
    future = {**valid, "schema_version": 2, "run_id": str(uuid.uuid4())}
    # Decodes, but its run id is no uuid: the ledger's write fails every time (not transient).
    unwritable = {**valid, "run_id": "not-a-run-id", "correlation_id": "not-a-run-id"}
    try:
        await stack.start("ledger")
        await shorten_ack_waits(nats_url, namespace.upper(), 4.0)
        await publish(nats_url, subject, b"{not json", "poison-malformed")
        await publish(nats_url, subject, json.dumps(future).encode(), "poison-v2")
        await publish(nats_url, subject, json.dumps({**unwritable, "message_id": "poison-unwritable"}).encode(),
                      "poison-unwritable")
        await publish(nats_url, subject, good.model_dump_json().encode(), good.message_id)

        # The valid message behind the poison is written at once, not after the poison's retries.
        await eventually(lambda: db_pool.fetchval("SELECT 1 FROM rebalance_runs WHERE id = $1::uuid", good.run_id),
                         "the valid message to be written", timeout=30, diagnostics=stack.logs)
        letters = await eventually(
            lambda: _dead_letters(db_pool, subject, 3), "three dead letters", timeout=60, diagnostics=stack.logs)
        assert letters is not None
        by_id = {r["message_id"]: r for r in letters}
        assert set(by_id) == {"poison-malformed", "poison-v2", "poison-unwritable"}
        assert "invalid payload" in by_id["poison-malformed"]["reason"]
        assert "schema_version" in by_id["poison-v2"]["reason"]
        assert bytes(by_id["poison-malformed"]["payload"]) == b"{not json"
        # Bounded: a failing message is retried MAX_ATTEMPTS times, then set aside.
        assert by_id["poison-unwritable"]["deliveries"] == 3, dict(by_id["poison-unwritable"])
        assert all(r["consumer"] == "ledger.events" for r in letters)

        counters = scrape(ops_port)
        assert counters.get('rebalancer_dead_letters_total{consumer="ledger.events",reason="invalid_payload"}') == 2
        assert counters.get(
            'rebalancer_dead_letters_total{consumer="ledger.events",reason="attempts_exhausted"}') == 1, counters

        # Terminated: the consumer's ack floor is past all four, nothing pending or awaiting an ack.
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            info = await js.consumer_info(namespace.upper(), f"{namespace}-ledger-events")
            last = (await js.stream_info(namespace.upper())).state.last_seq
        finally:
            await nc.close()
        assert info.num_pending == 0 and info.num_ack_pending == 0, info
        assert info.ack_floor.stream_seq == last == 4, info
    finally:
        await stack.stop_all()
        await delete_stream(nats_url, namespace.upper())


async def _dead_letters(pool: asyncpg.Pool, subject: str, count: int) -> list[asyncpg.Record] | None:
    rows = await pool.fetch("SELECT * FROM dead_letters WHERE subject = $1 ORDER BY id", subject)
    return rows if len(rows) >= count else None
