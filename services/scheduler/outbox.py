"""The scheduler's outbox relay, safe with several replicas flushing at once.

``services.common.bus.OutboxRelay`` reads pending rows without locking them, so replicas that
flush together publish the same rows (deduplicated downstream) and can deadlock on their
``UPDATE ... published_at`` (seen with three replicas). Here each flush claims its rows with
``FOR UPDATE SKIP LOCKED`` in one transaction, so a row is published by one replica at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from services.common.bus import TRANSIENT_ERRORS, Bus

log = logging.getLogger(__name__)


class LockedOutboxRelay:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, producer: str, *, interval: float = 1.0) -> None:
        self.bus = bus
        self.pool = pool
        self.producer = producer
        self.interval = interval

    async def flush(self, limit: int = 500) -> int:
        """Publish up to ``limit`` pending rows (acks checked); returns how many were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, subject, message_id, payload FROM outbox"
                " WHERE producer = $1 AND published_at IS NULL ORDER BY id LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                self.producer,
                limit,
            )
            if not rows:
                return 0
            results = await asyncio.gather(
                *(self.bus.publish_raw(r["subject"], bytes(r["payload"]), r["message_id"]) for r in rows),
                return_exceptions=True,
            )
            published = [
                r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
            ]
            if published:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", published
                )
        if len(published) < len(rows):
            log.warning("outbox %s: %d publish(es) not acknowledged; will retry",
                        self.producer, len(rows) - len(published))
        return len(published)

    async def run(self, stop: asyncio.Event) -> None:
        """Background pass for rows a crash or an outage left behind."""
        while not stop.is_set():
            try:
                while await self.flush() > 0:
                    pass
            except TRANSIENT_ERRORS as exc:
                log.warning("outbox %s: relay waiting (%s)", self.producer, type(exc).__name__)
            except Exception:
                log.exception("outbox %s: relay error", self.producer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
