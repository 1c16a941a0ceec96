"""The pipeline benchmark: N paper portfolios due at once through pricer -> planner -> executor ->
ledger, each service a separate process (R replicas), on real NATS JetStream and PostgreSQL with
every delivery guarantee on (inbox, outbox, acks). Prints one table.

    .venv/bin/python -m bench.bench_pipeline --portfolios 1000 --assets 20
    .venv/bin/python -m bench.bench_pipeline --mode exchange-bound --portfolios 1000 --latency-ms 50 --rate-limit 1
    .venv/bin/python -m bench.bench_pipeline --mode single --portfolios 20 --assets 20
    .venv/bin/python -m bench.bench_pipeline --mode baseline --portfolios 1000 --assets 20
    .venv/bin/python -m bench.bench_pipeline --quick
    .venv/bin/python -m bench.bench_pipeline --portfolios 2000 --assets 20 --statements

Embedded nats-server and PostgreSQL are started unless NATS_URL / DATABASE_URL are set; either
way a throwaway database and a unique stream namespace are used and removed afterwards.

"Recorded" is when the ledger's transaction wrote the run's completion: its inbox row
(consumer ``ledger.events``, the completion's message id), ``processed_at = now()`` in that
transaction. Latency is that minus the due event's ``started_at`` (set when it is published).

After the process table come PostgreSQL's writes per portfolio by table (rows, and the index
entries they cost at most), and with ``--statements`` (which loads ``pg_stat_statements`` into the
embedded server) each statement's execution time, calls and WAL per portfolio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nats
from nats.js.api import PubAck

from bench.pg_profile import (
    STATEMENTS_LIBRARY,
    enable_statements,
    read_statements,
    read_table_writes,
    statements_since,
    statements_table,
    table_writes_since,
    table_writes_table,
)
from bench.pg_window import REPORTED_WITHIN_S, OwnReads, read_counters, wait_until_gone
from bench.pipeline_procs import Sampler, ServiceProcess, dead_services, listener_pid, start_services, stop_services
from bench.pipeline_seed import (
    POOL_APPLICATION,
    SeededPortfolio,
    assets_for,
    completion_id,
    create_database,
    drop_database,
    due_event,
    open_pool,
    seed_portfolios,
)
from bench.pipeline_stats import (
    ProcessUsage,
    cpu_ceiling,
    exchange_lower_bound,
    key_values,
    percentile,
    seed_baseline_seconds,
    usage_table,
)
from contracts.envelope import derived_id
from contracts.v1 import RebalanceDue
from services.common.bus import ensure_stream
from services.common.devstack import resolve_infra
from services.common.settings import ServiceSettings
from services.executor.engine import CONSUMER as EXECUTOR_CONSUMER
from services.ledger.app import CONSUMER as LEDGER_CONSUMER

MODES = ("throughput", "exchange-bound", "baseline", "single")
PUBLISH_CHUNK = 500
REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="throughput")
    p.add_argument("--portfolios", type=int, default=1000)
    p.add_argument("--assets", type=int, default=20, help="assets per portfolio (exchange-bound: orders)")
    p.add_argument("--replicas", type=int, default=1, help="processes per service")
    p.add_argument("--latency-ms", type=float, default=None, help="paper exchange latency (exchange-bound: 50)")
    p.add_argument("--rate-limit", type=float, default=None,
                   help="paper exchange calls/s per account (exchange-bound: 1)")
    p.add_argument("--rate", type=float, default=None,
                   help="publish due events at this many per second instead of one burst")
    p.add_argument("--batch-size", type=int, default=None, help="BATCH_SIZE for the services")
    p.add_argument("--db-pool-max", type=int, default=None, help="DB_POOL_MAX for the services")
    p.add_argument("--executor-concurrency", type=int, default=None, help="EXECUTOR_CONCURRENCY")
    p.add_argument("--log-level", default="WARNING", help="LOG_LEVEL for the services (their default: INFO)")
    p.add_argument("--baseline-sample", type=int, default=5,
                   help="baseline: portfolios run one at a time for real, then extrapolated")
    p.add_argument("--no-durable", action="store_true",
                   help="embedded PostgreSQL with fsync off (default: durable, as in production)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    p.add_argument("--statements", action="store_true",
                   help=f"load {STATEMENTS_LIBRARY} into the embedded PostgreSQL (or use a DATABASE_URL server's) "
                        "and print each statement's share of the server's work")
    p.add_argument("--keep-logs", action="store_true", help="keep the services' logs (path printed)")
    p.add_argument("--quick", action="store_true", help="a small, fast run: 200 portfolios x 5 assets")
    args = p.parse_args(argv)
    if args.quick:
        args.portfolios, args.assets, args.timeout = 200, 5, 180.0
    if args.mode == "exchange-bound":
        args.latency_ms = 50.0 if args.latency_ms is None else args.latency_ms
        args.rate_limit = 1.0 if args.rate_limit is None else args.rate_limit
        if args.assets == p.get_default("assets"):
            args.assets = 4
        # Every account waits on its exchange at once: one plan in flight per account.
        if args.executor_concurrency is None:
            args.executor_concurrency = max(256, args.portfolios)
    return args


@dataclass
class RunResult:
    """What one batch of runs produced, read back from the ledger."""

    first_due: float  # wall clock, s
    last_recorded: float
    latencies: list[float]
    statuses: dict[str, int]
    orders_executed: int
    orders_failed: int
    max_orders_one_run: int
    dead_letters: int

    @property
    def makespan(self) -> float:
        return self.last_recorded - self.first_due


def service_env(args: argparse.Namespace, nats_url: str, database_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXECUTOR_", "BATCH_", "DB_POOL"))}
    env.update(NATS_URL=nats_url, DATABASE_URL=database_url, BUS_NAMESPACE=namespace,
               STREAM_NAME=namespace.upper(), OPS_PORT="0", LOG_LEVEL=args.log_level,
               PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    optional = {"BATCH_SIZE": args.batch_size, "DB_POOL_MAX": args.db_pool_max,
                "EXECUTOR_CONCURRENCY": args.executor_concurrency, "PAPER_LATENCY_MS": args.latency_ms,
                "PAPER_RATE_LIMIT": args.rate_limit}
    env.update({k: str(v) for k, v in optional.items() if v is not None})
    return env


async def wait_for_consumers(js: nats.js.JetStreamContext, settings: ServiceSettings, timeout: float) -> None:
    wanted = {settings.consumer_name(s, p) for s, p in
              (("pricer", "due"), ("planner", "valued"), ("executor", "plans"), ("ledger", "events"))}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            infos = await js.consumers_info(settings.stream_name)
            if wanted <= {i.name for i in infos}:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"consumers {sorted(wanted)} not created in {timeout:.0f}s")


async def publish_due(js: nats.js.JetStreamContext, subject: str, portfolios: Sequence[SeededPortfolio],
                      rate: float | None) -> tuple[float, list[RebalanceDue]]:
    """Publish one due event per portfolio (a burst, or paced at ``rate``/s); every publish is
    acknowledged by JetStream. Returns the wall time of the first publish and the events."""
    events: list[RebalanceDue] = []
    futures: list[asyncio.Future[PubAck]] = []
    first = time.time()
    start = time.monotonic()
    for index, portfolio in enumerate(portfolios):
        if rate:
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        event = due_event(portfolio)  # started_at = now: when this one is due
        events.append(event)
        futures.append(await js.publish_async(subject, event.model_dump_json().encode(),
                                              headers={"Nats-Msg-Id": event.message_id}))
        if len(futures) >= PUBLISH_CHUNK:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    return first, events


RecordedCount = Callable[[], Awaitable[int]]  # how many runs the ledger has finished recording


async def wait_recorded(recorded: RecordedCount, expected: int, timeout: float, services: Sequence[ServiceProcess],
                        *, progress: bool = False, poll_s: float = 0.5) -> None:
    """Until ``expected`` runs are recorded, polling every ``poll_s``.

    The count scans the runs table (0.95 ms a call on average over a 2,000-run benchmark, more as
    the table grows) and PostgreSQL's CPU is part of the figures; the makespan and latencies come
    from the rows' own timestamps, so how soon this notices the end changes none of them."""
    deadline = time.monotonic() + timeout
    last_print = time.monotonic()
    while True:
        done = await recorded()
        if done >= expected:
            return
        dead = dead_services(services)
        if dead:
            raise RuntimeError(f"service(s) died: {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{expected} runs recorded after {timeout:.0f}s")
        if progress and time.monotonic() - last_print > 5:
            print(f"  ... {done}/{expected} recorded", file=sys.stderr, flush=True)
            last_print = time.monotonic()
        await asyncio.sleep(poll_s)


async def read_results(pool: asyncpg.Pool, events: Sequence[RebalanceDue], first_due: float) -> RunResult:
    started = {completion_id(e.run_id): e.started_at for e in events}
    rows = await pool.fetch("SELECT message_id, processed_at FROM inbox WHERE consumer = $1"
                            " AND message_id = ANY($2::text[])", LEDGER_CONSUMER, list(started))
    latencies = [(r["processed_at"] - started[r["message_id"]]).total_seconds() for r in rows]
    last = max((r["processed_at"] for r in rows), default=datetime.now(UTC)).timestamp()
    run_ids = [uuid.UUID(e.run_id) for e in events]
    statuses = {r["status"]: r["n"] for r in await pool.fetch(
        "SELECT status, count(*) AS n FROM rebalance_runs WHERE id = ANY($1::uuid[]) GROUP BY status", run_ids)}
    totals = await pool.fetchrow(
        "SELECT coalesce(sum(orders_executed), 0) AS executed, coalesce(sum(orders_failed), 0) AS failed,"
        " coalesce(max(orders_executed), 0) AS most FROM rebalance_runs WHERE id = ANY($1::uuid[])", run_ids)
    dead = await pool.fetchval("SELECT count(*) FROM dead_letters")
    return RunResult(first_due, last, latencies, statuses, totals["executed"], totals["failed"], totals["most"],
                     dead)


# Where a run's time goes: when each of these rows was written, relative to the run's due time.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("ledger recorded due", LEDGER_CONSUMER, "due"),
    ("ledger recorded valued", LEDGER_CONSUMER, "valued"),
    ("ledger recorded plan", LEDGER_CONSUMER, "plan"),
    ("executor finished plan", EXECUTOR_CONSUMER, "plan"),
    ("ledger recorded completion", LEDGER_CONSUMER, "completed"),
)


async def stage_timeline(pool: asyncpg.Pool, events: Sequence[RebalanceDue]) -> list[tuple[str, str]]:
    """p50/p99 of (inbox row written - due) per stage: the inbox rows are written in the same
    transaction as each consumer's effect, so they time-stamp every hop."""
    lines = []
    for label, consumer, stage in STAGES:
        started = {derived_id(e.run_id, stage): e.started_at for e in events}
        rows = await pool.fetch("SELECT message_id, processed_at FROM inbox WHERE consumer = $1"
                                " AND message_id = ANY($2::text[])", consumer, list(started))
        lines.append((f"  {label}", latency_line(
            [(r["processed_at"] - started[r["message_id"]]).total_seconds() for r in rows])))
    return lines


def latency_line(latencies: Sequence[float]) -> str:
    if not latencies:
        return "n/a"
    ms = [x * 1000 for x in latencies]
    return (f"p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, "
            f"max {max(ms):.0f} ms (n={len(ms)})")


class Bench:
    def __init__(self, args: argparse.Namespace, nats_url: str, admin_url: str, embedded: str) -> None:
        self.args = args
        self.nats_url = nats_url
        self.admin_url = admin_url
        self.embedded = embedded
        self.namespace = f"bench{uuid.uuid4().hex[:8]}"
        self.db_name = self.namespace
        self.report: list[tuple[str, str]] = []
        self.timeline: list[tuple[str, str]] = []
        self.postgres_tables: list[str] = []  # printed after the process table

    def note(self, key: str, value: str) -> None:
        self.report.append((key, value))

    async def run(self) -> None:
        args = self.args
        log_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-logs-"))
        database_url = await create_database(self.admin_url, self.db_name)
        pool = await open_pool(database_url)
        admin = await asyncpg.connect(self.admin_url)  # reads the server-wide counters from another database
        own = await OwnReads.open(database_url)
        nc = await nats.connect(self.nats_url)
        settings = ServiceSettings(nats_url=self.nats_url, database_url=database_url,
                                   bus_namespace=self.namespace, stream_name=self.namespace.upper())
        services: list[ServiceProcess] = []
        try:
            sequential = args.baseline_sample if args.mode == "baseline" else 0
            t = time.monotonic()
            seeded = await seed_portfolios(pool, 1 + args.portfolios + sequential, assets_for(args.assets))
            warmup, batch, extra = seeded[0], seeded[1:1 + args.portfolios], seeded[1 + args.portfolios:]
            self.note("seeding", f"{len(seeded)} portfolios in {time.monotonic() - t:.2f} s (COPY)")
            await ensure_stream(settings)
            js = nc.jetstream()
            services = start_services(service_env(args, self.nats_url, database_url, self.namespace),
                                      args.replicas, log_dir)
            await wait_for_consumers(js, settings, 60.0)
            sampler = Sampler()
            for s in services:
                sampler.add(s.name, s.process.pid)
            for name, url, tree in (("nats-server", self.nats_url, False), ("postgresql", self.admin_url, True)):
                pid = listener_pid(url)
                if pid is not None:
                    sampler.add(name, pid, with_children=tree)
            sampler.add("bench (publish/poll)", os.getpid())
            subject = settings.subjects.rebalance_due
            statements_unavailable = await enable_statements(pool) if args.statements else None

            # Warm-up: imports, market caches and pools, so the figures are of the steady state.
            await publish_due(js, subject, [warmup], None)
            await wait_recorded(own.recorded, 1, 120.0, services)
            baseline = (await self.one_at_a_time(js, subject, own.recorded, extra, services)
                        if args.mode == "baseline" else None)
            # The window: only the services and ``own`` use the database until it ends. The pool's
            # connections report their counts as they close; the services' within a few seconds.
            await pool.close()
            await wait_until_gone(admin, self.db_name, keep_pid=own.pid, application_name=POOL_APPLICATION)
            await asyncio.sleep(REPORTED_WITHIN_S)
            already = await own.recorded()
            tables_before = await read_table_writes(own.connection)
            statements_before = (await read_statements(own.connection)
                                 if args.statements and not statements_unavailable else {})
            await own.start_counting()
            counters_before = await read_counters(admin, self.db_name, await stream_messages(js, settings))
            sampler.mark_start()
            sampler.start()

            if args.mode == "single":
                first, events = await self.one_at_a_time(js, subject, own.recorded, batch, services)
            else:
                first, events = await publish_due(js, subject, batch, args.rate)
                self.note("published", f"{len(events)} due events in {time.time() - first:.2f} s"
                          + (f" (paced at {args.rate:g}/s)" if args.rate else " (one burst)"))
                await wait_recorded(own.recorded, already + len(events), args.timeout, services, progress=True)
            usages = sampler.stop()
            # Every service's connection reports its last counts as it closes.
            stop_services(services)
            await wait_until_gone(admin, self.db_name, keep_pid=own.pid)
            await own.report()
            spent = await read_counters(admin, self.db_name, await stream_messages(js, settings)) - counters_before

            pool = await open_pool(database_url)
            result = await read_results(pool, events, first)
            self.timeline = await stage_timeline(pool, events)
            per = max(len(batch), 1)
            transactions = (f"{(spent.transactions - own.transactions) / per:.1f}" if own.can_report
                            else "n/a (needs PostgreSQL 15)")
            self.note("per portfolio", f"{transactions} PostgreSQL transactions, "
                      f"{spent.stream_messages / per:.1f} stream messages")
            # WAL is the write work itself, and unlike CPU time it does not vary with the machine's load.
            self.note("WAL per portfolio", f"{spent.wal_records / per:.0f} records, "
                      f"{spent.wal_bytes / per / 1024:.1f} KiB ({spent.wal_fpi / per:.1f} full-page images; "
                      "the whole server's WAL)")
            self.note("machine busy during the run", f"{sampler.machine_busy_fraction:.0%} of {os.cpu_count()} cores"
                      " (see '(other processes)' below: CPU taken by jobs outside this benchmark)")
            self.summarise(result, len(batch))
            whole, busiest, single = cpu_ceiling(usages, len(batch), os.cpu_count() or 1)
            if args.mode != "single":  # alone, idle polling dominates the CPU: no ceiling to read
                self.note("CPU-bound ceiling (measured CPU)",
                          f"{whole:.0f} portfolios/s on {os.cpu_count()} idle cores; "
                          f"busiest process {busiest} alone caps at {single:.0f}/s (one core)")
            if baseline:
                await self.baseline(pool, *baseline, result)
            writes = table_writes_since(tables_before, await read_table_writes(pool))
            self.postgres_tables.append("\n".join(table_writes_table(writes, len(batch))))
            if args.statements:
                self.postgres_tables.append(statements_unavailable or "\n".join(statements_table(
                    statements_since(statements_before, await read_statements(pool)), len(batch))))
            self.print_table(usages, len(batch))
        finally:
            stop_services(services)
            await nc.close()
            await pool.close()
            await own.close()
            await admin.close()
            with contextlib.suppress(Exception):
                await drop_database(self.admin_url, self.db_name)
            if not self.embedded:
                with contextlib.suppress(Exception):
                    await delete_stream(self.nats_url, settings.stream_name)
            if args.keep_logs:
                print(f"service logs: {log_dir}", file=sys.stderr)
            else:
                shutil.rmtree(log_dir, ignore_errors=True)

    async def one_at_a_time(self, js: nats.js.JetStreamContext, subject: str, recorded: RecordedCount,
                            portfolios: Sequence[SeededPortfolio],
                            services: Sequence[ServiceProcess]) -> tuple[float, list[RebalanceDue]]:
        """Each portfolio alone: published after the previous one is recorded. Returns the wall
        time of the first publish and the events."""
        events: list[RebalanceDue] = []
        first = time.time()
        done = await recorded()
        for portfolio in portfolios:
            _, published = await publish_due(js, subject, [portfolio], None)
            events.extend(published)
            done += 1
            # A lone run's latency is read from the database, but the next one starts only when
            # this notices the last one finished: a short poll.
            await wait_recorded(recorded, done, self.args.timeout, services, poll_s=0.005)
        return first, events

    async def baseline(self, pool: asyncpg.Pool, first: float, sample: Sequence[RebalanceDue],
                       pipeline: RunResult) -> None:
        """The seed's way, from ``sample`` run one at a time before the measured window."""
        alone = await read_results(pool, sample, first)
        work = sum(alone.latencies) / len(alone.latencies)
        orders = alone.orders_executed / max(len(alone.latencies), 1)
        n = self.args.portfolios
        estimate = seed_baseline_seconds(n, orders, work)
        self.note("baseline method", f"{len(alone.latencies)} portfolios run one at a time for real "
                  f"(mean {work * 1000:.0f} ms each, {orders:.1f} orders), plus the seed's 1 s between "
                  f"consecutive orders, extrapolated to {n}")
        self.note("baseline (seed's way)", f"{estimate:.0f} s = {n / estimate:.3f} portfolios/s")
        self.note("pipeline / baseline", f"{estimate / pipeline.makespan:.0f}x faster "
                  f"({pipeline.makespan:.2f} s vs {estimate:.0f} s)")

    def summarise(self, result: RunResult, portfolios: int) -> None:
        args = self.args
        rate = portfolios / result.makespan if result.makespan > 0 else float("nan")
        if args.mode == "single":
            self.note("one portfolio alone", latency_line(result.latencies))
            if self.timeline:
                self.note("timeline from due (inbox rows)", "")
                self.report.extend(self.timeline)
        else:
            self.note("makespan (first due -> last recorded)", f"{result.makespan:.2f} s")
            self.note("throughput", f"{rate:.0f} portfolios/s")
            self.note("latency due -> recorded", latency_line(result.latencies))
            if self.timeline:
                self.note("timeline from due (inbox rows)", "")
                self.report.extend(self.timeline)
        self.note("run statuses", ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())))
        self.note("orders", f"{result.orders_executed} executed, {result.orders_failed} failed; "
                  f"dead letters {result.dead_letters}")
        if args.mode == "exchange-bound":
            bound = exchange_lower_bound(result.max_orders_one_run, args.latency_ms / 1000, args.rate_limit)
            self.note("lower bound: slowest account's orders",
                      f"{bound.orders_only_s:.2f} s ({result.max_orders_one_run} orders at "
                      f"{args.rate_limit:g}/s, {args.latency_ms:g} ms latency)")
            self.note("lower bound: all its exchange calls", f"{bound.all_calls_s:.2f} s (+ executor's balance "
                      "read after the orders, + pricer's balance read)")
            self.note("makespan / bound", f"{result.makespan / bound.orders_only_s:.2f}x (orders only), "
                      f"{result.makespan / bound.all_calls_s:.2f}x (all calls)")

    def print_table(self, usages: Sequence[ProcessUsage], portfolios: int) -> None:
        args = self.args
        header = [
            ("mode", args.mode),
            ("portfolios x assets", f"{portfolios} x {args.assets}"),
            ("replicas per service", str(args.replicas)),
            ("infrastructure", self.embedded or "NATS_URL / DATABASE_URL"),
            ("service env", " ".join(f"{k}={v}" for k, v in (
                ("LOG_LEVEL", args.log_level), ("BATCH_SIZE", args.batch_size), ("DB_POOL_MAX", args.db_pool_max),
                ("EXECUTOR_CONCURRENCY", args.executor_concurrency), ("PAPER_LATENCY_MS", args.latency_ms),
                ("PAPER_RATE_LIMIT", args.rate_limit)) if v is not None)),
            ("machine", f"{os.cpu_count()} cores"),
        ]
        print()
        print("\n".join(key_values(header + self.report)))
        print()
        print("\n".join(usage_table(usages, portfolios)))
        print()
        for table in self.postgres_tables:
            print(table)
            print()


async def stream_messages(js: nats.js.JetStreamContext, settings: ServiceSettings) -> int:
    return int((await js.stream_info(settings.stream_name)).state.messages)


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.chmod(state_dir, 0o755)  # the embedded PostgreSQL runs as an unprivileged user
    try:
        pg_settings = {"shared_preload_libraries": STATEMENTS_LIBRARY} if args.statements else None
        with resolve_infra(state_dir, durable=not args.no_durable, log=lambda m: print(m, file=sys.stderr),
                           pg_settings=pg_settings) as infra:
            embedded = ", ".join(
                name for name, flag in (("embedded nats-server", infra.nats_embedded),
                                        ("embedded PostgreSQL" + (" (fsync off)" if args.no_durable else ""),
                                         infra.postgres_embedded)) if flag)
            asyncio.run(Bench(args, infra.nats_url, infra.database_url, embedded).run())
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
