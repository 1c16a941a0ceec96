"""The stack runner: infrastructure, migrations, demo, services, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from services.common.devstack import DevstackError, answers, free_port, resolve_infra
from services.common.exchanges.paper import run_price_walk
from services.common.migrate import apply_migrations
from services.stack.children import Child, start_child, stop_children, wait_first_exit
from services.stack.plan import (
    SERVICES,
    StackPorts,
    child_specs,
    history_curl,
    trigger_curl,
    with_database,
)
from services.stack.seed import DemoSeed, load_or_create_token, seed_demo
from services.stack.state import SECRET_KEYS_ENV, local_secret_keys

EMBEDDED_DATABASE = "rebalancer"
DEFAULT_API_PORT = 8000
PRICE_WALK_SEED = 42
PRICE_WALK_INTERVAL_SECONDS = 5.0
_API_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path
    api_port: int | None = None  # None: 8000 or the next free port
    demo: bool = True
    services: tuple[str, ...] = SERVICES
    price_walk: bool = True


def say(message: str) -> None:
    print(f"stack     | {message}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def choose_api_port(requested: int | None) -> int:
    if requested is not None:
        if not _port_free(requested):
            raise DevstackError(f"--api-port {requested} is already in use")
        return requested
    for port in range(DEFAULT_API_PORT, DEFAULT_API_PORT + 100):
        if _port_free(port):
            return port
    return free_port()


def missing_services(services: tuple[str, ...]) -> list[str]:
    return [name for name in services if importlib.util.find_spec(f"services.{name}.__main__") is None]


async def _app_database(database_url: str, embedded: bool) -> str:
    """The application database, created when missing: DATABASE_URL's own (the server answers but
    the database may not exist yet), or ``rebalancer`` on the embedded server."""
    target = with_database(database_url, EMBEDDED_DATABASE) if embedded else database_url
    name = urlsplit(target).path.lstrip("/")
    try:
        conn = await asyncpg.connect(target)
    except asyncpg.InvalidCatalogNameError:
        maintenance = await asyncpg.connect(with_database(target, "postgres"))
        try:
            if not await maintenance.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await maintenance.execute(f'CREATE DATABASE "{name}"')
                say(f"created database {name}")
        finally:
            await maintenance.close()
    else:
        await conn.close()
    return target


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _start_price_walk(pool: asyncpg.Pool, stop: asyncio.Event) -> asyncio.Task[int]:
    walk = run_price_walk(pool, PRICE_WALK_SEED, PRICE_WALK_INTERVAL_SECONDS, stop)
    return asyncio.create_task(walk, name="paper-price-walk")


async def _wait_for_api(url: str, children: list[Child]) -> Child | None:
    """None once the api answers; the child that died first if one dies before."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _API_READY_TIMEOUT_S
    while loop.time() < deadline:
        for child in children:
            if child.process.returncode is not None:
                return child
        if answers(url, timeout=0.2):
            return None
        await asyncio.sleep(0.1)
    say(f"WARNING: the api did not answer at {url} within {_API_READY_TIMEOUT_S:.0f}s")
    return None


def _banner(api_url: str | None, seed: DemoSeed | None) -> None:
    say("")
    if api_url is None:
        say("the api is not started (see --services)")
    else:
        say(f"API: {api_url}   (docs: {api_url}/docs)")
    if seed is not None and api_url is not None:
        say(f"demo token: {seed.token}")
        say("rebalance the demo portfolio now:")
        say("  " + trigger_curl(api_url, seed.token, str(seed.portfolio_id)))
        say("then read its history:")
        say("  " + history_curl(api_url, seed.token, str(seed.portfolio_id)))
    say("Ctrl-C stops everything.")
    say("")


async def run_stack(options: StackOptions) -> int:
    absent = missing_services(options.services)
    if absent:
        say(f"ERROR: no module services.<name>.__main__ for: {', '.join(absent)}")
        return 2
    stop = asyncio.Event()
    with _stop_on_signals(stop), resolve_infra(options.state_dir, durable=True, log=say) as infra:
        database_url = await _app_database(infra.database_url, infra.postgres_embedded)
        applied = await apply_migrations(database_url)
        say(f"migrations applied: {', '.join(applied) or 'none pending'}")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        assert pool is not None
        walk: asyncio.Task[int] | None = None
        try:
            seed = None
            if options.demo:
                seed = await seed_demo(pool, load_or_create_token(options.state_dir / "demo-token"))
                say(f"demo portfolio {seed.portfolio_id} on paper account 'demo'"
                    + (" (funded now)" if seed.funded_now else ""))
                if options.price_walk:
                    walk = _start_price_walk(pool, stop)
            return await _run_services(options, infra.nats_url, database_url, infra.postgres_embedded,
                                      seed, stop)
        finally:
            stop.set()
            if walk is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(walk, timeout=10)
            await pool.close()
            say("stopped")


async def _run_services(options: StackOptions, nats_url: str, database_url: str, embedded_database: bool,
                        seed: DemoSeed | None, stop: asyncio.Event) -> int:
    with_api = "api" in options.services
    ports = StackPorts(api=choose_api_port(options.api_port) if with_api else 0,
                       ops={name: free_port() for name in options.services})
    api_url = f"http://127.0.0.1:{ports.api}" if with_api else None
    secret_keys = ({SECRET_KEYS_ENV: local_secret_keys(options.state_dir, os.environ)}
                   if embedded_database else {})
    specs = child_specs(sys.executable, os.environ, nats_url=nats_url, database_url=database_url,
                        ports=ports, services=options.services, extra=secret_keys)
    children: list[Child] = []
    try:
        for spec in specs:
            children.append(await start_child(spec))
            say(f"started {spec.name} (pid {children[-1].process.pid}, ops port {ports.ops[spec.name]})")
        dead = await _wait_for_api(api_url, children) if api_url is not None else None
        if dead is None and not stop.is_set():
            _banner(api_url, seed)
            dead = await _until_stop_or_death(children, stop)
        if dead is not None:
            say(f"!!! {dead.name} EXITED with code {dead.process.returncode}: stopping the stack !!!")
            return 1
        return 0
    finally:
        say("stopping services")
        await stop_children(children)


async def _until_stop_or_death(children: list[Child], stop: asyncio.Event) -> Child | None:
    stopped = asyncio.ensure_future(stop.wait())
    if not children:
        await stopped
        return None
    first_exit = asyncio.ensure_future(wait_first_exit(children))
    try:
        await asyncio.wait({stopped, first_exit}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not first_exit.done():
            first_exit.cancel()
    if first_exit.done() and not first_exit.cancelled():
        return first_exit.result()
    return None
