"""Services, nats-server and PostgreSQL as separate processes, for the fault suite.

``ServiceProcess`` runs ``python -m services.<name>`` with an environment, logs to a file, waits
until the service says it started, and can be killed (SIGKILL), stopped and restarted. ``Stack``
holds several and stops them all on exit, whatever happened. ``NatsServer`` and ``PgCluster``
are dedicated servers a test may kill or crash and start again on the same store and port.

Every child gets PR_SET_PDEATHSIG=SIGKILL: if the test process itself dies, its children die
with it, so a crashed or interrupted run leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig

from services.common.devstack import answers, embedded_postgres, free_port, nats_server_binary, postgres_bindir

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTED_MARK = " started (stream "  # Runtime._after_start logs "<service> started (stream ...)"
# Variables a service reads that must never leak from the test process into a child.
_SCRUBBED = ("NATS_URL", "DATABASE_URL", "CRASH_AT", "PAPER_FAULTS", "PAPER_LATENCY_MS", "BUS_NAMESPACE",
             "STREAM_NAME", "OPS_PORT")
_PR_SET_PDEATHSIG = 1
# Every stack created, newest last: the suite prints their logs when a test fails.
CREATED_STACKS: list[Stack] = []
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Last line of defence (with PDEATHSIG) against orphans: kill any child still running."""
    for process in list(_LIVE):
        if process.poll() is None:
            process.kill()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the test process goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(cmd: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    _LIVE.add(process)
    return process


def _terminate(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServiceProcess:
    """One service as a child process; restartable with a different environment."""

    def __init__(self, name: str, base_env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.base_env = dict(base_env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0  # where the current start's output begins in the log file

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the service (not waiting for it): ``extra_env`` adds to the base environment,
        for this start only (so a restart without it drops ``CRASH_AT``)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        env = {**self.base_env, **(extra_env or {})}
        self.starts += 1
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            shown = {k: v for k, v in (extra_env or {}).items()}
            log.write(f"\n===== start #{self.starts} of {self.name} {shown} =====\n")
        self._log_offset = self.log_path.stat().st_size
        self.process = _spawn([sys.executable, "-m", f"services.{self.name}"], env, self.log_path)

    def output(self, *, current_start_only: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            if current_start_only:
                log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this start logged that it started (its consumers exist on the stream)."""
        deadline = time.monotonic() + timeout
        while STARTED_MARK not in self.output(current_start_only=True):
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.returncode}) before it started:\n"
                                     f"{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start within {timeout:.0f}s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    async def wait_exit(self, timeout: float = 60.0) -> int:
        """Until the process ends; its return code (-9 for SIGKILL, as CRASH_AT does)."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout:.0f}s:\n{self.tail()}")
            await asyncio.sleep(0.05)
        code = self.returncode
        assert code is not None
        return code

    def kill(self) -> None:
        """SIGKILL, like ``kill -9``: no shutdown hook runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """SIGTERM (a graceful shutdown), SIGKILL if it does not end in time. Waits without
        blocking the event loop: a fault proxy in this process may carry the shutdown's traffic."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        deadline = time.monotonic() + grace_seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill()

    async def restart(self, extra_env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        """Stop (if running) and start again, with only the base environment plus ``extra_env``."""
        await self.stop()
        self.start(extra_env)
        await self.wait_ready(timeout)

    def tail(self, lines: int = 60) -> str:
        text = self.output().splitlines()[-lines:]
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(text)


def service_env(
    *,
    nats_url: str,
    database_url: str,
    namespace: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a service child: the test's own (PATH, ...) minus anything a service
    reads, then the bus, the database and quick intervals suited to tests."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        NATS_URL=nats_url,
        DATABASE_URL=database_url,
        BUS_NAMESPACE=namespace,
        STREAM_NAME=namespace.upper(),
        OPS_PORT="0",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO_ROOT),
        # The scheduler checks every second; the executor's reconciler runs often in tests.
        SCHEDULER_CHECK_INTERVAL="1",
        RECONCILE_INTERVAL_SECONDS="2",
        RECONCILE_AFTER_SECONDS="3",
    )
    env.update(extra or {})
    return env


class Stack:
    """Named service processes sharing one environment; ``async with`` stops them all."""

    def __init__(self, base_env: Mapping[str, str], log_dir: Path) -> None:
        self.base_env = dict(base_env)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.services: dict[str, ServiceProcess] = {}
        CREATED_STACKS.append(self)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    async def start(
        self,
        *names: str,
        env_for: Mapping[str, Mapping[str, str]] | None = None,
        timeout: float = 90.0,
    ) -> None:
        """Start the services at once, then wait until each is ready."""
        for name in names:
            service = self.services.get(name) or ServiceProcess(name, self.base_env, self.log_dir)
            self.services[name] = service
            service.start((env_for or {}).get(name))
        for name in names:
            await self.services[name].wait_ready(timeout)

    async def stop_all(self, grace_seconds: float = 10.0) -> None:
        """Stop every service in parallel (SIGTERM, then SIGKILL after the grace period)."""
        await asyncio.gather(*(s.stop(grace_seconds) for s in self.services.values()))

    def logs(self) -> str:
        return "\n".join(s.tail(120) for s in self.services.values())

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()


@contextlib.asynccontextmanager
async def stack(base_env: Mapping[str, str], log_dir: Path) -> AsyncIterator[Stack]:
    running = Stack(base_env, log_dir)
    try:
        yield running
    finally:
        await running.stop_all()


async def shorten_ack_waits(nats_url: str, stream: str, seconds: float) -> list[str]:
    """Lower ``ack_wait`` of every consumer on ``stream`` (created by the services themselves).

    A message a killed process held is redelivered only after ack_wait (60-120 s in the
    services); the fault suite shortens it so each crash is recovered within seconds. Nothing
    else of the services' consumer config changes. Returns the consumer names.
    """
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        names = []
        for info in await js.consumers_info(stream):
            config: ConsumerConfig = info.config
            config.ack_wait = seconds
            await js.add_consumer(stream, config=config)  # create-or-update on an existing durable
            names.append(info.name)
        return names
    finally:
        await nc.close()


# ---------------------------------------------------------------------------- nats-server


class NatsServer:
    """A dedicated nats-server with JetStream: kill -9 it and start it again on the same store
    directory and port."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.log_path = store_dir / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        store_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        cmd = [str(nats_server_binary()), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1",
               "-p", str(self.port)]
        self.process = _spawn(cmd, os.environ, self.log_path)
        deadline = time.monotonic() + timeout
        while not answers(self.url, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nats-server did not start:\n{self.log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process, 10.0)


# ---------------------------------------------------------------------------- PostgreSQL


class PgCluster:
    """A dedicated PostgreSQL cluster (initialised by devstack.embedded_postgres) that a test
    crashes with ``pg_ctl stop -m immediate`` and starts again on the same port."""

    def __init__(self, data_dir: Path, admin_dsn: str) -> None:
        self.data_dir = data_dir
        self.admin_dsn = admin_dsn
        self.port = int(admin_dsn.rsplit(":", 1)[1].split("/", 1)[0])

    def dsn_for(self, database: str) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + f"/{database}"

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(postgres_bindir() / "pg_ctl"), *args]
        owner = pwd.getpwuid(self.data_dir.stat().st_uid).pw_name
        if os.geteuid() == 0 and owner != "root":
            cmd = ["runuser", "-u", owner, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies, recovery runs on the next start."""
        result = self._pg_ctl("stop", "-m", "immediate", "-w", "-D", str(self.data_dir))
        if result.returncode != 0:
            raise AssertionError(f"pg_ctl stop -m immediate failed: {result.stderr or result.stdout}")

    def start(self) -> None:
        # The options devstack starts it with, on the same port.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                   "-c max_connections=200")
        log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        result = self._pg_ctl("start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(log_file),
                              "-o", options)
        if result.returncode != 0:
            raise AssertionError(f"pg_ctl start failed: {result.stderr or result.stdout}")


@contextlib.contextmanager
def pg_cluster(data_dir: Path) -> Iterator[PgCluster]:
    """A durable cluster under ``data_dir`` (fsync on: a crash must lose no committed write)."""
    quiet = lambda _message: None  # noqa: E731
    with embedded_postgres(data_dir, durable=True, log=quiet) as admin_dsn:
        yield PgCluster(data_dir.resolve(), admin_dsn)
