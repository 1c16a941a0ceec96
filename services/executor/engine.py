"""Executing one plan: sells first, buys sized to the quote actually received, every order
idempotent by its client order id, and exactly one completion per run.

Every step can be interrupted (crash, timeout, redelivery) and run again: a leg whose intent is
final is not touched; a leg that may have reached the exchange is looked up by its client order
id before anything is sent; the completion is written with the plan's inbox entry in one
transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import asyncpg

from contracts.envelope import derived_id
from contracts.subjects import Subjects
from contracts.v1 import (
    Holding,
    OrdersReported,
    PlanCreated,
    PlannedOrder,
    RebalanceCompleted,
    RunError,
)
from contracts.v1.strategy import LEG_ABANDONED, OUTCOME_UNKNOWN
from services.common import metrics
from services.common.bus import OutboxRelay, TransientError
from services.common.coalesce import Coalescer
from services.common.crash import crash_point
from services.common.db import OutboxMessage
from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.exchanges.port import (
    ExchangeError,
    ExchangePort,
    LegFailed,
    Market,
    OrderAnswer,
    OrderRequest,
    OrderResult,
    OutcomeUnknown,
    RetryLater,
    RunFailed,
)
from services.common.keyed_locks import KeyedLocks
from services.common.settings import RUN_WINDOW
from services.executor import intents, reports, resend, sizing
from services.executor.intents import Intent
from services.executor.pacing import RetryPacing
from services.executor.resend import AfterMiss

log = logging.getLogger("services.executor")
CONSUMER = "executor.plans"
ZERO = Decimal(0)
LOOKUP_DELAYS = (0.2, 0.5, 1.0, 2.0)
# Plans as (plan message id, portfolio id, run id): done already, the run holding the portfolio,
# and whether the scheduler failed this run for its lease (migration 009).
READ_STATUSES = """
SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = p.message_id) AS done,
       (SELECT active_run_id::text FROM portfolios WHERE id = p.portfolio_id) AS holder,
       EXISTS (SELECT 1 FROM expired_runs WHERE run_id = p.run_id) AS expired
FROM unnest($2::text[], $3::uuid[], $4::uuid[]) WITH ORDINALITY AS p(message_id, portfolio_id, run_id, position)
ORDER BY p.position
"""
# Each plan's inbox entry and, only if that entry is new, its completion event.
WRITE_COMPLETIONS = """
WITH completions AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) WITH ORDINALITY
        AS c(plan_message_id, subject, message_id, payload, position)
), claimed AS (
    INSERT INTO inbox (consumer, message_id) SELECT $1, plan_message_id FROM completions
    ON CONFLICT DO NOTHING RETURNING message_id
)
INSERT INTO outbox (producer, subject, message_id, payload)
SELECT 'executor', c.subject, c.message_id, c.payload FROM completions c
WHERE c.plan_message_id IN (SELECT message_id FROM claimed) ORDER BY c.position
ON CONFLICT (message_id) DO NOTHING
"""


class LegNotProvenAbsent(RunFailed):
    """A leg that may be on the exchange is not found there, and the exchange cannot be asked for
    it by its client id: it is never sent again, so the run stops and leaves it to the reconciler."""

    code = "order_not_found"


@dataclass
class LegOutcome:
    order: PlannedOrder
    state: str  # filled | rejected | failed | canceled
    result: OrderResult | None = None
    error: RunError | None = None


# A leg placed and resting on the book: followed with the phase's other resting legs once all of
# them are placed (Executor._follow_resting), never recorded as such.
RESTING = "resting"


@dataclass(frozen=True)
class Finished:
    """A leg's outcome, not yet recorded."""

    order: PlannedOrder
    intent: Intent
    state: str  # filled | rejected | failed | canceled, or RESTING until followed
    result: OrderResult | None
    error: RunError | None


@dataclass
class RunState:
    plan: PlanCreated
    outcomes: list[LegOutcome] = field(default_factory=list)
    run_failed: RunError | None = None
    # Legs that may be on the exchange when the run stopped: the reconciler looks them up.
    unresolved: list[RunError] = field(default_factory=list)
    markets: Mapping[str, Market] = field(default_factory=dict)
    # The resting legs of the phase being placed, by client order id: how to follow them.
    resting: dict[str, tuple[OrderRequest, ExchangePort]] = field(default_factory=dict)

    @property
    def started(self) -> datetime:
        """When the run was claimed, in UTC (the bus's times are UTC; a naive one is read as such)."""
        started = self.plan.started_at
        return started if started.tzinfo is not None else started.replace(tzinfo=UTC)


class Executor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        accounts: ExchangeAccounts,
        relay: OutboxRelay,
        subjects: Subjects,
        *,
        poll_interval: float = 1.0,
        lease_seconds: float = 900.0,
        resend_after_seconds: float = 60.0,
        resend_after_seconds_by_exchange: Mapping[str, float] | None = None,
    ) -> None:
        self.pool = pool
        self.accounts = accounts
        self.relay = relay
        self.subjects = subjects
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        # A leg that may have been sent and that look-ups do not find is sent again only this long
        # after it was sent, on exchanges that may take a while to list a new order.
        self.resend_after_seconds = resend_after_seconds
        self.resend_after_seconds_by_exchange = dict(resend_after_seconds_by_exchange or {})
        # A run's orders are sent and followed only this long after its claim (RUN_WINDOW).
        self.run_window = timedelta(seconds=lease_seconds * RUN_WINDOW)
        self._account_locks = KeyedLocks()
        self._statuses = Coalescer(self._read_statuses)
        self._completions = Coalescer(self._write_completions)
        self._outcomes = Coalescer(partial(intents.record_outcomes, pool))
        self._intents = Coalescer(partial(intents.ensure_intents_many, pool))
        self._pacing = RetryPacing()

    # ------------------------------------------------------------------ the run
    async def execute(self, plan: PlanCreated) -> None:
        """Run (or resume) a plan; idempotent. Orders of one account go one at a time.

        The run's events wait in the outbox until its completion is written, then go out together
        (the ledger writes them in one transaction); if the run stops early, they go out at once.
        """
        state = RunState(plan)
        try:
            await self._execute(state)
        except TransientError as exc:
            # Tried again sooner when this try got further than the last (RetryPacing).
            exc.retry_in = self._pacing.after_failed_try(plan.run_id, len(state.outcomes))
            raise
        else:
            self._pacing.finished(plan.run_id)
        finally:
            self.relay.wake()

    async def _execute(self, state: RunState) -> None:
        plan = state.plan
        async with self._account_locks.hold(plan.strategy.connection_id):
            done, holder, expired = await self._run_status(plan)
            if done:
                return
            if holder is not None or expired:
                # The scheduler failed this run (lease expired) and released the portfolio, which a
                # newer run holds or may claim at any moment: a newer run valued while this one
                # traded would trade the same drift again.
                held = f"run {holder} holds it" if holder is not None else "it was released"
                state.run_failed = RunError(
                    stage="executor",
                    code="superseded" if holder is not None else "released",
                    message=f"run {plan.run_id} no longer holds the portfolio ({held} after the run's lease"
                    " expired); no further order placed",
                )
            elif plan.decision == "rebalance" and plan.orders:
                try:
                    await self._execute_orders(state)
                except RunFailed as exc:  # the account itself is unusable (unknown, auth, ...)
                    log.error("FAILED: run stopped: %s", exc)
                    state.run_failed = RunError(stage="executor", code=exc.code, message=str(exc))
            if state.run_failed is not None:
                await self._account_for_every_leg(state)
            crash_point("executor.before_complete")
            await self._complete(state)

    async def _account_for_every_leg(self, state: RunState) -> None:
        """After the run stopped early, every planned leg it has not reported is accounted for,
        from what is stored: a leg never sent is recorded as not placed, a leg that ended in an
        earlier attempt is reported again (the same event ids), and a leg that may be on the
        exchange is named in the run's errors and left to the reconciler, which reports it."""
        plan = state.plan
        reported = {o.order.leg for o in state.outcomes}
        missing = [o for o in plan.orders if o.leg not in reported]
        if not missing or plan.decision != "rebalance" or state.run_failed is None:
            return
        stored = await intents.run_intents(self.pool, plan.run_id)
        finished: list[Finished] = []
        for order in missing:
            intent = stored.get(order.leg)
            if intent is None:
                continue  # never stored, so never sent: the run failed before its legs
            if intent.may_exist:
                state.unresolved.append(
                    leg_error(
                        order,
                        OUTCOME_UNKNOWN,
                        f"{order.side} {order.symbol} ({intent.client_order_id}) may be on the exchange: it is"
                        " looked up and reported when the exchange says how it ended",
                    )
                )
            else:  # stored as never sent (recorded not placed), or final (replayed)
                finished.append(await self._leg(state, order, intent.amount, intent, None))
        await self._record(state, finished)

    async def _run_status(self, plan: PlanCreated) -> tuple[bool, str | None, bool]:
        """Whether this plan was already completed, which other run holds the portfolio's claim,
        if another does, and whether the run's lease expired (plans starting together share one
        round trip)."""
        done, holder, expired = await self._statuses((plan.message_id, plan.portfolio_id, plan.run_id))
        return done, holder if holder is not None and holder != plan.run_id else None, expired

    async def _read_statuses(self, plans: Sequence[tuple[str, str, str]]) -> list[tuple[bool, str | None, bool]]:
        rows = await self.pool.fetch(
            READ_STATUSES, CONSUMER, [m for m, _, _ in plans], [p for _, p, _ in plans], [r for _, _, r in plans]
        )
        return [(row["done"], row["holder"], row["expired"]) for row in rows]

    async def _execute_orders(self, state: RunState) -> None:
        if state.plan.strategy.dry_run:
            await self._trade(state, None)
            return
        async with self.accounts.use(state.plan.strategy.connection_id) as exchange:
            await self._trade(state, exchange)

    async def _trade(self, state: RunState, exchange: ExchangePort | None) -> None:
        """Place the plan's legs on ``exchange`` (sells, then buys), or simulate them (None)."""
        plan = state.plan
        markets = state.markets = await self._markets(plan)
        exchange_id = plan.strategy.exchange_id
        client_ids = {o.leg: client_order_id_for(exchange_id, plan.run_id, o.leg) for o in plan.orders}
        sells = [o for o in plan.orders if o.side == "sell"]
        buys = [o for o in plan.orders if o.side == "buy"]
        # The first batch's legs are stored as 'sending' with the intents (one statement less):
        # the sells, or, with nothing to sell, the buys sized to the quote the plan saw.
        presized: list[sizing.SizedLeg] | None = None
        first_batch: dict[int, Decimal] = {}
        if exchange is not None and exchange.places_batches:
            if sells:
                first_batch = {o.leg: o.amount for o in sells}
            else:
                presized = await self._size_buys(state, buys, markets, None)
                first_batch = {s.order.leg: s.amount for s in presized if not s.dropped}
        # Runs storing their intents together share the statement.
        legs = await self._intents(intents.WantedIntents(plan, client_ids, first_batch))
        crash_point("executor.after_intents")

        await self._phase(state, [(o, o.amount) for o in sells], legs, exchange)
        # On a resumed run, only legs never sent are sized to the cash on hand now: a leg that may
        # already exist on the exchange keeps the amount it was sent with (and is looked up first).
        unsent = [o for o in buys if legs[o.leg].state == "intent"]
        sent = [sizing.SizedLeg(o, legs[o.leg].amount) for o in buys if legs[o.leg].state != "intent"]
        if state.run_failed is None:
            try:
                if presized is not None and all(legs[o.leg].fresh for o in buys):
                    sized = presized  # sized just now, stored with these amounts
                else:
                    # Nothing sold and nothing sent yet: the quote on hand is what the plan was made from.
                    as_planned = not sells and not sent
                    sized = sent + await self._size_buys(state, unsent, markets, None if as_planned else exchange)
            except RunFailed as exc:
                state.run_failed = RunError(stage="executor", code=exc.code, message=str(exc))
        if state.run_failed is not None:
            # Every remaining leg is recorded as not placed, with its event, so the history
            # accounts for each planned order.
            await self._phase(state, [(o, o.amount) for o in buys], legs, exchange)
            return
        below_minimum = [
            Finished(
                leg.order, legs[leg.order.leg], "rejected", None,
                leg_error(leg.order, "below_minimum", leg.dropped),
            )
            for leg in sized
            if leg.dropped
        ]
        placeable = [(leg.order, leg.amount) for leg in sorted(sized, key=lambda s: s.order.leg) if not leg.dropped]
        await self._phase(state, placeable, legs, exchange, below_minimum)

    async def _markets(self, plan: PlanCreated) -> Mapping[str, Market]:
        if plan.strategy.dry_run:
            return {m.symbol: m for m in _plan_markets(plan)}
        try:
            return await self.accounts.markets(plan.strategy.connection_id)
        except RetryLater as exc:
            raise TransientError(str(exc)) from exc

    async def _size_buys(
        self,
        state: RunState,
        buys: list[PlannedOrder],
        markets: Mapping[str, Market],
        exchange: ExchangePort | None,
    ) -> list[sizing.SizedLeg]:
        """Buys paid in the portfolio's quote are sized to the quote on hand: read from the exchange
        when the run has sold or sent anything, otherwise as the plan saw it."""
        plan = state.plan
        quote = plan.strategy.quote_currency
        funded = [o for o in buys if o.quote == quote]
        others = [sizing.SizedLeg(o, o.amount) for o in buys if o.quote != quote]
        if not funded:
            return others
        if exchange is None:
            # A dry run (the quote on hand plus what the simulated sells brought in), or a run that
            # has changed nothing on the account yet: the pricer read its balances moments ago, and
            # an exchange refuses a buy the account cannot pay, so one read (and one rate-limited
            # call) less costs nothing in safety.
            before = {h.asset: h.free for h in plan.holdings}
            simulated = [(o.order, o.result) for o in state.outcomes if o.result is not None]
            available = sizing.holdings_after(before, simulated).get(quote, ZERO)
        else:
            try:
                balances = await exchange.fetch_balance()
            except RetryLater as exc:
                raise TransientError(str(exc)) from exc
            available = balances[quote].free if quote in balances else ZERO
        available -= plan.strategy.cash_reserve
        return sizing.size_buys(funded, available, markets) + others

    # ------------------------------------------------------------------ a phase (sells, then buys)
    async def _phase(
        self,
        state: RunState,
        items: list[tuple[PlannedOrder, Decimal]],
        legs: Mapping[int, Intent],
        exchange: ExchangePort | None,
        finished: list[Finished] | None = None,
    ) -> None:
        """Place a phase's legs and record their outcomes together. Legs never sent go to the
        exchange as one batch; legs that may already exist are looked up one by one first."""
        done = list(finished or [])
        fresh: list[tuple[PlannedOrder, Decimal, Intent]] = []
        try:
            for order, amount in items:
                if exchange is not None:
                    self._stop_when_out_of_time(state)
                intent = legs[order.leg]
                never_sent = intent.state == "intent" or (intent.state == "sending" and intent.fresh)
                if state.run_failed is not None and intent.may_exist:
                    continue  # never recorded as not placed: left to _account_for_every_leg
                if never_sent and exchange is not None and exchange.places_batches:
                    fresh.append((order, amount, intent))
                else:
                    done.append(await self._leg(state, order, amount, intent, exchange))
            if fresh and state.run_failed is not None:  # a looked-up leg just failed the run
                await intents.unmark_unsent(self.pool, [i.client_order_id for _, _, i in fresh if i.state == "sending"])
                done += [await self._leg(state, order, amount, intent, exchange) for order, amount, intent in fresh]
            elif fresh:
                assert exchange is not None
                await self._send_batch(state, fresh, exchange, done)
            await self._follow_resting(state, done)
        except (TransientError, RunFailed):
            # What is known is kept; the rest (resting orders too, stored 'open') is looked up on retry.
            state.resting.clear()
            await self._record(state, [f for f in done if f.state != RESTING])
            raise
        await self._record(state, done)

    async def _follow_resting(self, state: RunState, done: list[Finished]) -> None:
        """Follow the phase's resting limit orders together until each fills or times out (or the
        run's time to trade ends), so that a phase waits one limit timeout, not one per order. A leg
        whose following failed stays RESTING in ``done`` (its intent is stored 'open'), and the
        first failure is raised once the others are known."""
        resting = [i for i, f in enumerate(done) if f.state == RESTING]
        if not resting:
            return
        follow = min(float(state.plan.strategy.limit_timeout_seconds), max(self._time_left(state), 0.0))
        followed = await asyncio.gather(
            *(self._follow_leg(state, done[i], follow) for i in resting), return_exceptions=True
        )
        state.resting.clear()
        failure: BaseException | None = None
        for i, outcome in zip(resting, followed, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                done[i] = outcome
        if failure is not None:
            raise failure

    async def _follow_leg(self, state: RunState, leg: Finished, follow_seconds: float) -> Finished:
        assert leg.result is not None
        request, exchange = state.resting[leg.intent.client_order_id]
        found = await self._follow_open_order(exchange, request, leg.result, follow_seconds, state.started)
        ended_as, error = reports.ended(leg.order.leg, leg.order.symbol, found.status, found.filled)
        return Finished(leg.order, leg.intent, ended_as, found, error)

    async def _send_batch(
        self,
        state: RunState,
        fresh: list[tuple[PlannedOrder, Decimal, Intent]],
        exchange: ExchangePort,
        done: list[Finished],
    ) -> None:
        """All legs are marked as possibly sent (one statement, unless they were stored so), then
        placed in one call. Legs the exchange did not answer were not sent: they go in the next
        call, or back to 'intent' when the run stops or must be retried, so no leg is ever counted
        or looked up needlessly."""
        pending = [(order, intent, self._request(state, order, amount, intent)) for order, amount, intent in fresh]
        # Legs stored as 'sending' with their intents are marked already.
        unmarked = [(r.client_order_id, r.amount) for _, intent, r in pending if intent.state == "intent"]
        if unmarked and await intents.mark_sending_many(self.pool, unmarked) < len(unmarked):
            # A leg was resolved meanwhile (never expected of a leg stored unsent): nothing is
            # sent; the retry reads every leg's state again and looks up those marked.
            raise TransientError("a leg of the batch was resolved before it was sent; not sent")
        crash_point("executor.after_intent")
        while pending and self._stop_when_out_of_time(state) is None:
            with metrics.time_exchange_call(exchange.exchange_id, "create_orders"):
                answers = await exchange.create_orders([request for _, _, request in pending])
            crash_point("executor.after_exchange")
            answered, pending = pending[: len(answers)], pending[len(answers) :]
            try:
                for (order, intent, request), answer in zip(answered, answers, strict=True):
                    done.append(await self._answered(state, order, intent, request, answer, exchange))
            except (TransientError, RunFailed):  # unanswered legs were never sent
                await intents.unmark_unsent(self.pool, [request.client_order_id for _, _, request in pending])
                raise
            if not answers:
                raise TransientError("the exchange answered none of the orders")  # never expected
        if pending:  # the run failed: what was not sent is recorded as not placed
            await intents.unmark_unsent(self.pool, [request.client_order_id for _, _, request in pending])
            for order, intent, request in pending:
                done.append(await self._leg(state, order, request.amount, intent, exchange))

    async def _answered(
        self,
        state: RunState,
        order: PlannedOrder,
        intent: Intent,
        request: OrderRequest,
        answer: OrderAnswer,
        exchange: ExchangePort,
    ) -> Finished:
        if isinstance(answer, OutcomeUnknown):
            log.warning("order %s outcome unknown; looking it up by client order id", request.client_order_id)
            found = await self._lookup(exchange, request, state.started, attempts=len(LOOKUP_DELAYS))
            if found is None:
                # Still unknown: the intent stays 'sending', so the retry looks it up before sending.
                raise TransientError(f"order {request.client_order_id} not found yet")
            answer = found
        if isinstance(answer, OrderResult):
            return await self._placed(state, order, request, intent, answer, exchange)
        error = leg_error(order, answer.code, str(answer))
        if isinstance(answer, LegFailed):
            log.warning("FAILED: %s %s %s rejected: %s", order.side, request.amount, order.symbol, answer)
            return Finished(order, intent, "rejected", None, error)
        if isinstance(answer, RunFailed):
            log.error("FAILED: run stopped at %s %s: %s", order.side, order.symbol, answer)
            state.run_failed = error
            return Finished(order, intent, "failed", None, error)
        if isinstance(answer, RetryLater):
            # Refused for now before anything was done (a rate limit, an IP ban, a stale nonce:
            # port.RetryLater): the leg was not placed, so the retry sends it at once, without
            # first waiting for it to go unlisted, which on an exchange whose look-ups prove no
            # absence would stop the run with the leg unknown for good.
            await intents.unmark_unsent(self.pool, [request.client_order_id])
        # An unclassified error leaves the leg 'sending': it is looked up before it is sent again.
        raise TransientError(str(answer))

    async def _placed(
        self,
        state: RunState,
        order: PlannedOrder,
        request: OrderRequest,
        intent: Intent,
        found: OrderResult,
        exchange: ExchangePort,
    ) -> Finished:
        if found.status == "open":
            # Stored as open at once (a retry looks it up, never sends it again), and followed with
            # the phase's other resting orders when all are placed.
            await intents.resolve(self.pool, request.client_order_id, "open", intents.result_json(found))
            state.resting[request.client_order_id] = (request, exchange)
            return Finished(order, intent, RESTING, found, None)
        ended_as, error = reports.ended(order.leg, order.symbol, found.status, found.filled)
        return Finished(order, intent, ended_as, found, error)

    def _time_left(self, state: RunState) -> float:
        """Seconds left of the run's time to trade (``run_window`` from its claim)."""
        return (state.started + self.run_window - datetime.now(UTC)).total_seconds()

    def _stop_when_out_of_time(self, state: RunState) -> RunError | None:
        """Fail the run once its time to trade has passed (the scheduler will soon fail it for its
        lease and may claim a newer run, which must not meet this run's orders); the run's stop
        reason, if any."""
        if state.run_failed is None and self._time_left(state) <= 0:
            started = state.plan.started_at.strftime("%H:%M:%S")
            state.run_failed = RunError(
                stage="executor",
                code="out_of_time",
                message=f"run {state.plan.run_id} is past its time to trade ({self.run_window.total_seconds():.0f}s"
                f" of its {self.lease_seconds:.0f}s lease from {started} UTC); no further order placed",
            )
            log.error("FAILED: %s", state.run_failed.message)
        return state.run_failed

    # ------------------------------------------------------------------ one leg
    async def _leg(
        self,
        state: RunState,
        order: PlannedOrder,
        amount: Decimal,
        intent: Intent,
        exchange: ExchangePort | None,
    ) -> Finished:
        """One leg on its own: a replayed final leg, a leg not placed, a dry-run fill, or a leg
        that may already exist (looked up by its client order id before anything is sent)."""
        if intent.final:
            result = (
                intents.result_from_json(intent.client_order_id, order.symbol, order.side, intent.result)
                if intent.result
                else None
            )
            error = None
            if intent.state in ("rejected", "failed"):
                error = leg_error(order, intent.state, f"leg {order.leg} {intent.state}")
            elif intent.state == "abandoned":  # replayed as it was reported: given up, outcome unknown
                error = leg_error(order, LEG_ABANDONED, f"outcome unknown: leg {order.leg} abandoned by its owner")
            return Finished(order, intent, intent.state, result, error)
        if state.run_failed is not None:
            error = leg_error(order, "not_placed", f"not placed: {state.run_failed.message}")
            return Finished(order, intent, "failed", None, error)
        if exchange is None:
            simulated = sizing.simulated_result(order, amount, intent.client_order_id)
            return Finished(order, intent, "filled", simulated, None)

        request = self._request(state, order, amount, intent)
        answer: OrderAnswer | None = None
        if intent.state in ("sending", "open"):
            answer = await self._lookup(exchange, request, state.started, attempts=1)
            if answer is None and intent.may_exist:
                self._after_a_miss(exchange, intent, state.plan.strategy.connection_id)
        if answer is None:
            answer = await self._send(exchange, request)
        crash_point("executor.after_exchange")
        return await self._answered(state, order, intent, request, answer, exchange)

    def _after_a_miss(self, exchange: ExchangePort, intent: Intent, connection_id: str) -> None:
        """Returns if a leg of unknown outcome that a look-up missed is to be sent again; raises
        otherwise: TransientError to look it up on the run's retry, LegNotProvenAbsent to stop."""
        wait = self.resend_after(exchange.exchange_id)
        verdict = resend.after_a_miss(
            intent.state,
            intent.sent_ago,
            finds_by_client_id=exchange.finds_orders_by_client_id,
            lists_at_once=exchange.lists_new_orders_at_once,
            resend_after=wait,
        )
        cid = intent.client_order_id
        if verdict is AfterMiss.SEND:
            return
        if verdict is AfterMiss.LEAVE:
            raise LegNotProvenAbsent(
                f"order {cid} (leg {intent.leg}) may be on {exchange.exchange_id}, which lists an account's newest"
                f" orders only: not found there {intent.sent_ago:.0f}s after it was sent, and never sent again"
                " (it could trade twice). The reconciler goes on looking for it; if the account's history on the"
                f" exchange shows no such order, give it up: POST /api/v1/connections/{connection_id}/abandon-orders"
            )
        if intent.state == "open":
            raise TransientError(f"order {cid} was open and is not found now; not re-sent")
        raise TransientError(
            f"order {cid} not listed {intent.sent_ago:.1f}s after it may have been sent;"
            f" sent again only if still unlisted {wait:.0f}s after"
            if exchange.finds_orders_by_client_id
            else f"order {cid} not listed {intent.sent_ago:.1f}s after it may have been sent; looked up again"
        )

    def resend_after(self, exchange_id: str) -> float:
        """Seconds a leg of unknown outcome must go unlisted on this exchange before it is sent again."""
        return self.resend_after_seconds_by_exchange.get(exchange_id, self.resend_after_seconds)

    def _request(self, state: RunState, order: PlannedOrder, amount: Decimal, intent: Intent) -> OrderRequest:
        return OrderRequest(
            symbol=order.symbol,
            side=order.side,
            amount=amount,
            client_order_id=intent.client_order_id,
            order_type=order.order_type,
            price=self._limit_price(state, order),
            reference_price=order.price,
        )

    @staticmethod
    def _limit_price(state: RunState, order: PlannedOrder) -> Decimal | None:
        """A limit order rests at the plan's reference price (on the market's price step) unless
        the plan set one: it fills when the market comes back to the price the plan assumed."""
        if order.order_type != "limit":
            return None
        if order.limit_price is not None:
            return order.limit_price
        market = state.markets.get(order.symbol)
        return sizing.floor_to_step(order.price, market.price_step if market else None)

    async def _send(self, exchange: ExchangePort, request: OrderRequest) -> OrderAnswer:
        """Send one order, its intent marked first; the answer is handled like a batch's."""
        if not await intents.mark_sending(self.pool, request.client_order_id, request.amount):
            # The reconciler resolved it since the run read it: the retry replays what it found.
            raise TransientError(f"order {request.client_order_id} was resolved meanwhile; not sent")
        crash_point("executor.after_intent")
        try:
            with metrics.time_exchange_call(exchange.exchange_id, "create_order"):
                return await exchange.create_order(request)
        except ExchangeError as error:
            return error

    async def _lookup(
        self, exchange: ExchangePort, request: OrderRequest, run_started: datetime, *, attempts: int
    ) -> OrderResult | None:
        for attempt in range(attempts):
            try:
                found = await exchange.fetch_order_by_client_id(
                    request.symbol, request.client_order_id, placed_after=run_started
                )
            except (RetryLater, OutcomeUnknown) as exc:
                if attempt == attempts - 1:
                    raise TransientError(f"cannot look up {request.client_order_id}: {exc}") from exc
                found = None
            if found is not None:
                return found
            if attempt < attempts - 1:
                await asyncio.sleep(LOOKUP_DELAYS[attempt])
        return None

    async def _follow_open_order(
        self,
        exchange: ExchangePort,
        request: OrderRequest,
        order: OrderResult,
        timeout_seconds: float,
        run_started: datetime,
    ) -> OrderResult:
        """Poll a resting order (stored 'open') until it fills or times out, then cancel the rest."""
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        current = order
        while current.status == "open" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.poll_interval)
            current = await self._lookup(exchange, request, run_started, attempts=1) or current
        if current.status == "open" and current.exchange_order_id:
            # Whatever stays unknown here leaves the intent 'open': the retry looks the order up and
            # records its fills; nothing is recorded from the last poll, which may be stale.
            try:
                current = await exchange.cancel_order(request.symbol, current.exchange_order_id)
            except (RetryLater, OutcomeUnknown) as exc:
                raise TransientError(f"order {request.client_order_id} not confirmed canceled: {exc}") from exc
            except RunFailed:
                raise
            except ExchangeError:
                # Refused, most often because the order closed meanwhile: read back how it ended.
                current = await self._lookup(exchange, request, run_started, attempts=2) or current
            if current.status == "open":
                raise TransientError(f"order {request.client_order_id} still open after its cancel")
        return current

    async def _record(self, state: RunState, finished: list[Finished]) -> None:
        """Record legs' outcomes and their events together, in one statement. A replay of a final
        leg writes the same outcome again and re-queues the same event id, which the outbox keeps
        once."""
        if not finished:
            return
        report = self._orders_reported(state.plan, finished)
        message = OutboxMessage(self.subjects.orders_reported, report.message_id, report.model_dump_json().encode())
        outcomes = [
            intents.Outcome(
                leg.intent.client_order_id, leg.state, intents.result_json(leg.result) if leg.result else None
            )
            for leg in finished
        ]
        await self._outcomes((outcomes, message))  # runs recording together share the statement
        crash_point("executor.after_record")
        for leg in finished:
            state.outcomes.append(LegOutcome(leg.order, leg.state, leg.result, leg.error))
            metrics.observe_order(leg.order.side, leg.state)
            if leg.state == "filled" and leg.result is not None:
                log.info(
                    "SUCCESS: Order executed successfully: %s %s %s at %s",
                    leg.order.side,
                    leg.result.filled,
                    leg.order.symbol,
                    leg.result.average_price,
                )

    def _orders_reported(self, plan: PlanCreated, finished: list[Finished]) -> OrdersReported:
        """One message for the legs recorded together (``reports.orders_reported``)."""
        now = datetime.now(UTC)
        dry_run, exchange_id = plan.strategy.dry_run, plan.strategy.exchange_id
        orders = [
            reports.reported_order(
                plan.run_id,
                leg=leg.order.leg,
                client_order_id=leg.intent.client_order_id,
                symbol=leg.order.symbol,
                side=leg.order.side,
                order_type=leg.order.order_type,
                amount=leg.result.amount if leg.result is not None else leg.order.amount,
                state=leg.state,
                fill=None if leg.result is None else sizing.fill_of(leg.result, leg.order.quote, plan.prices),
                error=leg.error,
                dry_run=dry_run,
                exchange_id=exchange_id,
                now=now,
            )
            for leg in finished
        ]
        return reports.orders_reported(plan.next_stage(), orders)

    # ------------------------------------------------------------------ completion
    async def _complete(self, state: RunState) -> None:
        plan = state.plan
        completed = await self._completion(state)
        message = OutboxMessage(
            self.subjects.rebalance_completed, completed.message_id, completed.model_dump_json().encode()
        )
        # The plan's inbox entry and the completion event, in one statement: exactly one
        # completion per run, however often the plan is delivered (runs completing together
        # share the statement).
        await self._completions((plan.message_id, message))

    async def _write_completions(self, completions: Sequence[tuple[str, OutboxMessage]]) -> list[None]:
        await self.pool.execute(
            WRITE_COMPLETIONS,
            CONSUMER,
            [plan_message_id for plan_message_id, _ in completions],
            [m.subject for _, m in completions],
            [m.message_id for _, m in completions],
            [m.payload for _, m in completions],
        )
        return [None] * len(completions)

    async def _completion(self, state: RunState) -> RebalanceCompleted:
        plan = state.plan
        filled = [o for o in state.outcomes if o.state == "filled" and o.result is not None]
        failed = [o for o in state.outcomes if o.state != "filled"]
        errors = [o.error for o in state.outcomes if o.error is not None] + state.unresolved
        errors += [
            leg_error(o.order, "fee_unknown", f"{o.order.symbol} {o.order.side}: the exchange did not report the"
                      " fee; the trade is recorded with its fee marked unknown")
            for o in filled if o.result is not None and not o.result.fee_known
        ]
        traded = sum((sizing.to_quote(o.result.cost, o.order.quote, plan.prices) for o in filled if o.result), ZERO)
        fees = sum(
            (sizing.to_quote(o.result.fee, o.result.fee_currency, plan.prices) for o in filled if o.result),
            ZERO,
        )
        if plan.decision == "skip" or not plan.orders:
            status, reason = "skipped", plan.reason
        elif state.run_failed is not None:
            status, reason = "failed", state.run_failed.message
            if state.run_failed not in errors:
                errors.append(state.run_failed)
        elif failed and filled:
            status, reason = "partial", f"{len(failed)} of {len(plan.orders)} orders not filled"
        elif short := [o for o in filled if o.result is not None and o.result.filled < o.result.amount]:
            status, reason = "partial", f"{len(short)} of {len(plan.orders)} orders only partly filled"
        elif failed:
            status, reason = "failed", f"none of {len(plan.orders)} orders filled"
        else:
            status, reason = "succeeded", plan.reason
        holdings = await self._holdings_after(plan, [(o.order, o.result) for o in filled if o.result])
        value_after = sum((h.total * plan.prices.get(h.asset, ZERO) for h in holdings), ZERO)
        return RebalanceCompleted(
            message_id=derived_id(plan.run_id, "completed"),
            **plan.next_stage(),
            status=status,
            dry_run=plan.strategy.dry_run,
            quote_currency=plan.strategy.quote_currency,
            reason=reason,
            portfolio_value=plan.portfolio_value,
            value_after=value_after,
            holdings_after=holdings,
            orders_planned=len(plan.orders) if plan.decision == "rebalance" else 0,
            orders_executed=len(filled),
            orders_failed=len(failed),
            total_value_traded=traded,
            fees=fees,
            errors=errors,
            completed_at=datetime.now(UTC),
        )

    async def _holdings_after(self, plan: PlanCreated, fills: list[tuple[PlannedOrder, OrderResult]]) -> list[Holding]:
        assets = [h.asset for h in plan.holdings]
        if not plan.strategy.dry_run and fills:
            try:
                async with self.accounts.use(plan.strategy.connection_id) as exchange:
                    balances = await exchange.fetch_balance()
            except ExchangeError:
                # Rate limited, or the account refused (a run failed for its credentials): the
                # snapshot is computed from the plan and the fills below; the run still completes.
                pass
            else:
                return [
                    Holding(
                        asset=a,
                        free=balances[a].free if a in balances else ZERO,
                        total=balances[a].total if a in balances else ZERO,
                    )
                    for a in assets
                ]
        totals = sizing.holdings_after({h.asset: h.total for h in plan.holdings}, fills)
        return [Holding(asset=a, free=totals.get(a, ZERO), total=totals.get(a, ZERO)) for a in assets]


def leg_error(order: PlannedOrder, code: str, message: str) -> RunError:
    """What went wrong with one leg, as the executor reports it."""
    return reports.leg_error(order.leg, code, message)


def _plan_markets(plan: PlanCreated) -> list[Market]:
    """Dry runs never open the exchange: size with the fee rates the plan estimated."""
    seen: dict[str, Market] = {}
    for o in plan.orders:
        rate = o.fee / o.value if o.value else ZERO
        seen[o.symbol] = Market(symbol=o.symbol, base=o.base, quote=o.quote, taker_fee=rate, maker_fee=rate)
    return list(seen.values())
