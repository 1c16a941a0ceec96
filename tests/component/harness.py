"""Running one service's handlers in-process on FastStream's TestNatsBroker: no NATS server.

TestNatsBroker drives the Bus's batch pull subscribers (a published message reaches the handler
as a batch of one, synchronously) and routes what the handler publishes to every other matching
subscriber of the same broker, so a ``Recorder`` subscribed to the namespace sees the output.

The Runtime's own start-up (``Runtime._start``) connects to NATS to declare the stream, so it is
not run: ``serving`` installs the test database pool and runs the service's start-up hooks
directly. Acks, naks and terms are no-ops on TestNatsBroker's messages; delivery counts are 1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from faststream import Context
from faststream.nats import NatsBroker, TestNatsBroker
from pydantic import BaseModel

from services.common.runtime import Runtime
from services.common.settings import ServiceSettings

T = TypeVar("T", bound=BaseModel)


def settings_for(namespace: str, database_url: str = "postgresql://unused@127.0.0.1:1/unused") -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url,
        nats_url="nats://127.0.0.1:1",  # never dialled: TestNatsBroker replaces the connection
        bus_namespace=namespace,
        stream_name=namespace.upper(),
        ops_port=0,
    )


@dataclass(frozen=True)
class Published:
    subject: str
    msg_id: str | None  # the Nats-Msg-Id header JetStream deduplicates on
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Every message published to the service's stream namespace, in order."""

    messages: list[Published] = field(default_factory=list)

    def on(self, subject: str) -> list[Published]:
        return [m for m in self.messages if m.subject == subject]

    def models(self, subject: str, model: type[T]) -> list[T]:
        return [model.model_validate_json(m.body) for m in self.on(subject)]


def record(runtime: Runtime) -> Recorder:
    """Subscribe a recorder to everything in the namespace (before the test broker starts)."""
    recorder = Recorder()

    @runtime.bus.broker.subscriber(f"{runtime.settings.bus_namespace}.>", stream=runtime.bus.stream)
    async def _record(message: Any = Context("message")) -> None:
        raw = message.raw_message
        headers = raw.headers or {}
        recorder.messages.append(Published(raw.subject, headers.get("Nats-Msg-Id"), bytes(raw.data)))

    return recorder


async def settle(runtime: Runtime) -> None:
    """Wait for the handlers that a concurrent consumer runs as background tasks, and publish
    what they left in the outbox."""
    await runtime.settle()


@asynccontextmanager
async def serving(runtime: Runtime, pool: asyncpg.Pool | None = None) -> AsyncIterator[NatsBroker]:
    """The service's handlers on a TestNatsBroker, with ``pool`` as its database."""
    if pool is not None:
        await runtime.open_with(pool)
    else:
        for hook in runtime._startup_hooks:
            await hook()
    try:
        async with TestNatsBroker(runtime.bus.broker) as broker:
            yield broker
            await settle(runtime)
    finally:
        await runtime.close_opened()
