"""The message bus as every service uses it: one JetStream stream, durable batch consumers with
explicit acks, publishing with ``Nats-Msg-Id``, and the outbox relay.

Delivery rules (DESIGN.md): FastStream's default would terminate a message on the first error,
so every subscriber here acks manually. A batch is handled as one unit; when it fails it is
split so one bad message cannot hold back the others. Transient errors (database or NATS away)
are nacked with a growing delay and never dead-lettered; anything else is retried a bounded
number of times, then stored in ``dead_letters`` and terminated. Malformed payloads and unknown
schema versions go straight to the dead-letter table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import nats
from faststream import AckPolicy, Context
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts.envelope import Envelope
from services.common import db, metrics
from services.common.crash import crash_point
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Envelope)

# NATS-side trouble worth waiting out: timeouts, no responders while a server restarts.
TRANSIENT_BUS_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.ServiceUnavailableError,
)
TRANSIENT_ERRORS = db.TRANSIENT_DB_ERRORS + TRANSIENT_BUS_ERRORS


# A batch is what the consumer already has once one message has arrived, never what might come:
# the server answers a no-wait pull at once. This only bounds the wait for that answer.
DRAIN_ANSWER_SECONDS = 1.0


class TransientError(Exception):
    """Raised by a handler for a condition that will pass (an exchange rate limit, ...).

    ``retry_in``: the wait before the message is tried again, where the handler knows better than
    the message's delivery count, which counts every earlier try however far each got (None: the
    delivery count's back-off)."""

    def __init__(self, *args: object, retry_in: float | None = None) -> None:
        super().__init__(*args)
        self.retry_in = retry_in


RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, TransientError)


@dataclass(frozen=True)
class Incoming(Generic[M]):
    message: M
    raw: Msg

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def deliveries(self) -> int:
        return _deliveries(self.raw)


def _deliveries(raw: Msg) -> int:
    try:
        return int(raw.metadata.num_delivered)
    except Exception:  # a plain NATS message in unit tests has no JetStream metadata
        return 1


def redelivery_delay(deliveries: int) -> float:
    """Back-off for a nacked message: 0.5 s, 1 s, 2 s ... capped at 30 s."""
    return float(min(0.5 * 2 ** max(deliveries - 1, 0), 30.0))


def retry_delay(exc: BaseException, deliveries: int) -> float:
    """The wait before a message that failed with a passing ``exc`` is delivered again."""
    if isinstance(exc, TransientError) and exc.retry_in is not None:
        return exc.retry_in
    return redelivery_delay(deliveries)


def stream_config(settings: ServiceSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream_name,
        subjects=settings.subjects.stream_subjects,
        # Limits retention keeps Nats-Msg-Id dedup state across server restarts (NOTES.md).
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        max_age=settings.stream_max_age_days * 86400,
        duplicate_window=120,
    )


async def ensure_stream(settings: ServiceSettings) -> None:
    """Create the stream, or bring its config up to date; safe from many replicas at once."""
    nc = await nats.connect(settings.nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        config = stream_config(settings)
        try:
            await js.stream_info(settings.stream_name)
            await js.update_stream(config)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.stream_info(settings.stream_name)  # created by a concurrent replica
    finally:
        await nc.close()


class Bus:
    """A service's connection to the bus: the FastStream broker plus the helpers around it."""

    def __init__(
        self,
        settings: ServiceSettings,
        service: str,
        *,
        middlewares: Sequence[Any] = (),
    ) -> None:
        self.settings = settings
        self.service = service
        self.subjects = settings.subjects
        self.broker = NatsBroker(
            settings.nats_url,
            middlewares=tuple(middlewares),
            # FastStream's own handler prints every message; route it through ours (faststream.* is
            # kept at WARNING by setup_logging) so logs stay one format, one line per fact.
            logger=logging.getLogger("faststream.broker"),
            log_level=logging.DEBUG,
            graceful_timeout=30.0,
            max_reconnect_attempts=-1,
        )
        self.stream = JStream(
            name=settings.stream_name, subjects=settings.subjects.stream_subjects, declare=False
        )
        self.pool: asyncpg.Pool | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ publishing
    async def publish_raw(self, subject: str, payload: bytes, message_id: str) -> None:
        """Publish to the stream and wait for its acknowledgement (a duplicate is fine)."""
        await self.broker.publish(
            payload,
            subject,
            stream=self.settings.stream_name,
            headers={"Nats-Msg-Id": message_id, "content-type": "application/json"},
            timeout=10.0,
        )

    async def publish_event(self, subject: str, message: Envelope) -> None:
        await self.publish_raw(subject, message.model_dump_json().encode(), message.message_id)

    async def publish_many(self, items: Sequence[tuple[str, Envelope]]) -> None:
        """Publish concurrently; raises if any publish was not acknowledged."""
        await asyncio.gather(*(self.publish_event(subject, m) for subject, m in items))

    async def announce(self, subject: str, message: Envelope) -> None:
        """Publish on core NATS to every process listening now (``listener``): nothing is stored,
        so what an announcement asks must also happen without it, only later."""
        await self.broker.publish(
            message.model_dump_json().encode(), subject, headers={"content-type": "application/json"}
        )

    # ------------------------------------------------------------------ consuming
    def consumer(
        self,
        *,
        subject: str,
        purpose: str,
        models: type[M] | Mapping[str, type[M]],
        handle: Callable[[list[Incoming[M]]], Awaitable[None]],
        batch_size: int | None = None,
        ack_wait_seconds: float = 60.0,
        concurrent: int = 0,
        title: str | None = None,
        description: str | None = None,
    ) -> None:
        """Register a durable batch consumer on ``subject``.

        ``models`` is one model, or a model per exact subject (for wildcard consumers). ``handle``
        gets the decoded batch in stream order and must be idempotent: it runs again for
        messages redelivered after a crash.

        ``concurrent=N`` hands each message to ``handle`` on its own, up to N at once, and keeps
        fetching while they run: for slow work (exchange calls) where one message must not hold
        back the others. Each message is then acked or retried on its own.
        """
        durable = self.settings.consumer_name(self.service, purpose)
        consumer_id = f"{self.service}.{purpose}"
        pick = _model_picker(models)
        size = batch_size or self.settings.batch_size
        slots = asyncio.Semaphore(concurrent) if concurrent else None
        ack_wait_seconds = self.settings.consumer_ack_wait_seconds or ack_wait_seconds
        keepalive = ack_wait_seconds / 3

        async def run_one(item: Incoming[M]) -> None:
            assert slots is not None
            try:
                await self._process(consumer_id, [item], handle, keepalive)
            finally:
                slots.release()

        async def on_batch(message: Any = Context("message")) -> None:
            raw_messages: list[Msg] = list(message.raw_message)
            batch: list[Incoming[M]] = []
            for raw in raw_messages:
                decoded = await self._decode(consumer_id, raw, pick)
                if decoded is not None:
                    batch.append(decoded)
            if not batch:
                return
            if slots is None:
                await self._process(consumer_id, batch, handle, keepalive)
                return
            for item in batch:
                await slots.acquire()  # back-pressure: fetch no more than we can run
                task = asyncio.create_task(run_one(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        subscriber = self.broker.subscriber(
            subject,
            stream=self.stream,
            durable=durable,
            pull_sub=PullSub(batch_size=size, timeout=2.0, batch=True),
            ack_policy=AckPolicy.MANUAL,
            config=ConsumerConfig(
                durable_name=durable,
                ack_wait=ack_wait_seconds,
                max_deliver=-1,  # bounded by us: transient errors must never exhaust deliveries
                max_ack_pending=max(size * 20, 1000),
                deliver_policy=DeliverPolicy.ALL,
            ),
            title=title or f"{consumer_id}:{subject}",
            description=description,
            # Bodies are validated by _decode, one by one: FastStream's own JSON decoding of the
            # batch would fail the whole batch on one malformed payload before we could
            # dead-letter it.
            decoder=_raw_bodies,
        )
        subscriber(on_batch)
        _use_low_latency_fetch(subscriber, size)

    def responder(
        self, subject: str, *, description: str
    ) -> Callable[[Callable[[bytes], Awaitable[dict[str, Any]]]], None]:
        """Register a core-NATS request handler: it gets the request's raw bytes (whatever its
        content type) and returns the JSON reply."""

        def register(fn: Callable[[bytes], Awaitable[dict[str, Any]]]) -> None:
            # The raw decoder hands over the body untouched: a JSON content type is not parsed.
            async def on_request(body: bytes) -> dict[str, Any]:
                return await fn(body)

            on_request.__name__ = fn.__name__
            self.broker.subscriber(subject, description=description, decoder=_raw_bodies)(on_request)

        return register

    def listener(
        self, subject: str, model: type[M], *, description: str
    ) -> Callable[[Callable[[M], Awaitable[None]]], None]:
        """Register a core-NATS handler of announcements (``announce``): every replica gets each
        one; an undecodable one is logged and dropped (nothing is stored to dead-letter)."""

        def register(fn: Callable[[M], Awaitable[None]]) -> None:
            async def on_announcement(body: bytes) -> None:
                try:
                    message = model.model_validate_json(body)
                except ValidationError as exc:
                    log.warning("dropped an undecodable %s on %s: %s", model.__name__, subject, exc)
                    return
                await fn(message)

            on_announcement.__name__ = fn.__name__
            self.broker.subscriber(subject, description=description, decoder=_raw_bodies)(on_announcement)

        return register

    async def _decode(
        self, consumer_id: str, raw: Msg, pick: Callable[[str], type[M] | None]
    ) -> Incoming[M] | None:
        model = pick(raw.subject)
        reason: str | None = None
        if model is None:
            reason = f"no model for subject {raw.subject}"
        else:
            try:
                return Incoming(message=model.model_validate_json(raw.data), raw=raw)
            except ValidationError as exc:
                reason = f"invalid payload for {model.__name__}: {exc.errors(include_url=False)[:3]}"
        await self._dead_letter(consumer_id, raw, reason or "undecodable", "invalid_payload")
        return None

    async def _process(
        self,
        consumer_id: str,
        batch: list[Incoming[M]],
        handle: Callable[[list[Incoming[M]]], Awaitable[None]],
        keepalive: float,
    ) -> None:
        heartbeat = asyncio.create_task(_keep_in_progress(batch, keepalive))
        try:
            await handle(batch)
        except RETRYABLE as exc:
            delay = retry_delay(exc, max(i.deliveries for i in batch))
            log.warning(
                "%s: transient error (%s: %s); redelivering %d message(s) in %.1fs",
                consumer_id,
                type(exc).__name__,
                exc,
                len(batch),
                delay,
            )
            metrics.MESSAGES_PROCESSED.labels(consumer=consumer_id, outcome="retried").inc(len(batch))
            metrics.record_retry_wait(consumer_id, delay, len(batch))
            await _nak_all(batch, delay)
            return
        except Exception as exc:
            if len(batch) > 1:
                log.warning("%s: batch of %d failed (%s); retrying one by one", consumer_id, len(batch), exc)
                for item in batch:
                    await self._process(consumer_id, [item], handle, keepalive)
                return
            await self._fail_one(consumer_id, batch[0], exc)
            return
        finally:
            heartbeat.cancel()
        for item in batch:
            await _ack(item.raw)
        metrics.MESSAGES_PROCESSED.labels(consumer=consumer_id, outcome="processed").inc(len(batch))

    async def _fail_one(self, consumer_id: str, item: Incoming[M], exc: Exception) -> None:
        if item.deliveries >= self.settings.max_attempts:
            log.error(
                "%s: giving up on %s after %d deliveries: %s",
                consumer_id,
                item.message_id,
                item.deliveries,
                exc,
                exc_info=exc,
            )
            await self._dead_letter(
                consumer_id, item.raw, f"{type(exc).__name__}: {exc}", "attempts_exhausted"
            )
            return
        delay = redelivery_delay(item.deliveries)
        metrics.record_message(consumer_id, "retried")
        metrics.record_retry_wait(consumer_id, delay)
        log.warning(
            "%s: %s failed (%s: %s), attempt %d/%d; retrying in %.1fs",
            consumer_id,
            item.message_id,
            type(exc).__name__,
            exc,
            item.deliveries,
            self.settings.max_attempts,
            delay,
        )
        await item.raw.nak(delay=delay)

    async def _dead_letter(self, consumer_id: str, raw: Msg, reason: str, kind: str) -> None:
        """Store a message that cannot be processed, with its reason, and terminate it."""
        headers = raw.headers or {}
        message_id = headers.get("Nats-Msg-Id") or headers.get("message_id")
        if self.pool is None:
            log.error("%s: dead letter without a database (%s); terminating", consumer_id, reason)
        else:
            try:
                await db.record_dead_letter(
                    self.pool,
                    consumer=consumer_id,
                    subject=raw.subject,
                    message_id=message_id,
                    reason=reason,
                    payload=raw.data,
                    deliveries=_deliveries(raw),
                )
            except TRANSIENT_ERRORS:
                # Cannot store it now: leave it on the stream rather than lose it.
                await raw.nak(delay=redelivery_delay(_deliveries(raw)))
                return
        metrics.record_dead_letter(consumer_id, kind)
        log.error("%s: dead-lettered message %s on %s: %s", consumer_id, message_id, raw.subject, reason)
        await raw.term()


def _raw_bodies(message: Any) -> Any:
    return message.body


async def _available_now(sub: Any, batch: int) -> list[Msg]:
    """Up to ``batch`` messages the consumer holds for us now, without waiting for more.

    A pull request with ``no_wait`` and no ``expires``, which the server answers at once (the
    messages, then a 404 when it had fewer). nats-py's ``fetch`` always adds ``expires``, with which
    the server treats the request as a lingering pull and the drain costs its whole timeout.
    """
    messages: list[Msg] = []
    queue = sub._sub._pending_queue
    while len(messages) < batch and not queue.empty():  # a late answer to an earlier pull
        msg = queue.get_nowait()
        sub._sub._pending_size -= len(msg.data)
        if JetStreamContext.is_status_msg(msg) is None:
            messages.append(msg)
    if len(messages) == batch:
        return messages
    request = json.dumps({"batch": batch - len(messages), "no_wait": True}).encode()
    await sub._nc.publish(sub._nms, request, sub._deliver)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_ANSWER_SECONDS
    while len(messages) < batch:
        try:
            msg = await sub._sub.next_msg(timeout=max(deadline - loop.time(), 0.001))
        except (TimeoutError, nats.errors.TimeoutError):
            break  # whatever still comes waits in the queue for the next fetch
        status = JetStreamContext.is_status_msg(msg)
        if status is None:
            messages.append(msg)
        elif status in (api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT):
            break
    return messages


def _use_low_latency_fetch(subscriber: Any, batch_size: int) -> None:
    """Replace FastStream's batch pull loop (0.7) on this subscriber.

    Its loop keeps fetching until the batch is full or the timeout passes, which adds the whole
    timeout to every hop at low load, and it catches ``nats.errors.TimeoutError`` while nats-py
    raises ``asyncio.TimeoutError`` on an empty pull. This loop waits for the first message,
    then takes whatever else is already available without waiting (``_available_now``): low
    latency when idle, full batches under load.
    """

    async def consume_pull() -> None:
        sub = subscriber.subscription
        while subscriber.running:
            try:
                messages: list[Msg] = await sub.fetch(batch=1, timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.ConnectionClosedError, nats.js.errors.ServiceUnavailableError):
                await asyncio.sleep(0.5)  # unacked messages stay on the server for redelivery
                continue
            if batch_size > 1:
                messages += await _available_now(sub, batch_size - 1)
            if subscriber.running:
                await subscriber.consume(messages)

    subscriber._consume_pull = consume_pull


def _model_picker(models: type[M] | Mapping[str, type[M]]) -> Callable[[str], type[M] | None]:
    if isinstance(models, Mapping):
        table = dict(models)
        return table.get
    single = models
    return lambda _subject: single


async def _ack(raw: Msg) -> None:
    if not raw._ackd:
        await raw.ack()


async def _keep_in_progress(batch: Sequence[Incoming[Any]], every: float) -> None:
    """Tell JetStream the batch is still being worked on, so a long exchange call is not
    mistaken for a crash and redelivered to another replica meanwhile."""
    while True:
        await asyncio.sleep(every)
        for item in batch:
            if not item.raw._ackd:
                with contextlib.suppress(Exception):
                    await item.raw.in_progress()


async def _nak_all(batch: Sequence[Incoming[Any]], delay: float) -> None:
    for item in batch:
        if not item.raw._ackd:
            try:
                await item.raw.nak(delay=delay)
            except Exception:  # the connection may be gone; JetStream redelivers after ack_wait
                log.debug("nak failed", exc_info=True)


class OutboxRelay:
    """Publishes a service's outbox rows, checking each publish acknowledgement.

    ``flush`` runs right after the transaction that wrote them (low latency); the loop picks up
    whatever a crash or an outage left behind. Each flush locks the rows it publishes
    (``FOR UPDATE SKIP LOCKED``), so concurrent flushes, in one process or across replicas,
    publish disjoint rows and never wait on each other. Ids are deterministic, so a row
    published twice (a crash between publish and commit) is recognised downstream.
    """

    def __init__(self, bus: Bus, pool: asyncpg.Pool, producer: str, *, interval: float = 1.0) -> None:
        self.bus = bus
        self.pool = pool
        self.producer = producer
        self.interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask the relay loop to publish now: many writers' rows go out in one flush."""
        self._wake.set()

    async def flush(self, limit: int = 500) -> int:
        """Publish up to ``limit`` pending rows; returns how many were published."""
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
            published = [r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
            crash_point("outbox.after_publish")  # published, not yet marked: republished after restart
            if published:
                await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", published)
        failed = len(rows) - len(published)
        if failed:
            log.warning("outbox %s: %d publish(es) not acknowledged; will retry", self.producer, failed)
        return len(published)

    async def report(self) -> None:
        """Outbox backlog and lag, for the metrics."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS pending, extract(epoch FROM now() - min(created_at)) AS age"
            " FROM outbox WHERE producer = $1 AND published_at IS NULL",
            self.producer,
        )
        if row is not None:
            metrics.set_outbox_state(int(row["pending"]), float(row["age"] or 0.0))

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_report = 0.0
        while not stop.is_set():
            self._wake.clear()
            try:
                while await self.flush() > 0:
                    pass
                if loop.time() >= next_report:
                    await self.report()
                    next_report = loop.time() + self.interval
            except TRANSIENT_ERRORS as exc:
                log.warning("outbox %s: relay waiting (%s)", self.producer, type(exc).__name__)
            except Exception:
                log.exception("outbox %s: relay error", self.producer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
