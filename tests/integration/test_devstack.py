"""Embedded servers: they start, serve, stop, and leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from cryptography.fernet import Fernet

from services.api.accounts import token_hash
from services.common.devstack import (
    DevstackError,
    PostgresControl,
    answers,
    embedded_nats,
    embedded_postgres,
    free_port,
    nats_server_binary,
    resolve_infra,
)
from services.stack.plan import SERVICES, StackPorts, child_specs, prefix_line, trigger_curl, with_database
from services.stack.runner import StackOptions, run_stack
from services.stack.seed import DEMO_EMAIL, DEMO_PAPER_ACCOUNT
from services.stack.state import local_secret_keys
from tests.infra import Infra
from tests.support.pipeline import delete_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Under /tmp and world-traversable: pytest's tmp_path sits in a 0700 directory that the
    # unprivileged PostgreSQL user cannot enter.
    path = Path(tempfile.mkdtemp(prefix="rebalancer-devstack-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    # A zombie waiting for its parent to reap it is not running.
    return not (status.exists() and "State:\tZ" in status.read_text())


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_answers_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert answers(f"nats://127.0.0.1:{port}")
        assert answers(f"postgresql://u@127.0.0.1:{port}/db")
        # A NATS server list answers when any member does.
        assert answers(f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{port}")
    assert not answers(f"nats://127.0.0.1:{port}", timeout=0.2)


def test_answers_follows_a_postgres_unix_socket_url(state_dir: Path) -> None:
    url = f"postgresql://postgres@:6543/db?host={state_dir}"
    assert not answers(url)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(state_dir / ".s.PGSQL.6543"))
        listener.listen()
        assert answers(url)


async def test_embedded_nats_accepts_a_jetstream_publish_and_stops(state_dir: Path) -> None:
    with embedded_nats(state_dir / "nats") as url:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            await js.add_stream(name="devstack", subjects=["devstack.>"])
            ack = await js.publish("devstack.hello", b"hi")
            assert ack.stream == "devstack" and ack.seq == 1
        finally:
            await client.close()
    assert not answers(url, timeout=0.2)
    assert any((state_dir / "nats").rglob("*")), "JetStream stored nothing in its store dir"


def test_embedded_nats_stops_a_server_left_running_on_its_store_by_a_killed_run(state_dir: Path) -> None:
    store = state_dir / "nats"
    store.mkdir()
    pid_file = store / "nats-server.pid"
    leftover = subprocess.Popen(
        [str(nats_server_binary()), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(free_port()),
         "-P", str(pid_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.02)
        with embedded_nats(store) as url:
            assert leftover.wait(timeout=15) is not None
            assert answers(url)
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


async def test_embedded_postgres_runs_unprivileged_serves_and_leaves_no_process(state_dir: Path) -> None:
    data_dir = state_dir / "pg" / "data"
    with embedded_postgres(data_dir, durable=False, settings={"work_mem": "7MB"}) as dsn:
        pid = _postmaster_pid(data_dir)
        assert _process_alive(pid)
        if os.geteuid() == 0:
            assert _uid_of(pid) != 0, "PostgreSQL must not run as root"
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT 1 + 1") == 2
            assert await conn.fetchval("SHOW fsync") == "off"
            assert await conn.fetchval("SHOW work_mem") == "7MB"  # a caller's own server settings
        finally:
            await conn.close()
    assert not _process_alive(pid)
    assert not (data_dir / "postmaster.pid").exists()
    assert not answers(dsn, timeout=0.2)


async def test_embedded_postgres_keeps_data_across_restarts_and_is_durable_by_default(
        state_dir: Path) -> None:
    data_dir = state_dir / "pg" / "data"
    with embedded_postgres(data_dir) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
            assert await conn.fetchval("SHOW fsync") == "on"
        finally:
            await conn.close()
    with embedded_postgres(data_dir) as dsn_again:
        conn = await asyncpg.connect(dsn_again)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "still here"
        finally:
            await conn.close()


async def test_embedded_postgres_takes_over_a_data_dir_whose_server_outlived_a_killed_run(
        state_dir: Path) -> None:
    data_dir = state_dir / "pg" / "data"
    leftover = PostgresControl(data_dir.resolve(), log=lambda _: None)
    leftover.prepare()
    leftover.start(free_port(), durable=False)
    stale_pid = _postmaster_pid(data_dir)
    try:
        with embedded_postgres(data_dir, durable=False, log=lambda _: None) as dsn:
            assert not _process_alive(stale_pid)
            conn = await asyncpg.connect(dsn)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
    finally:
        leftover.stop()


def test_resolve_infra_names_a_set_variable_that_does_not_answer(state_dir: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(DevstackError, match="DATABASE_URL"), \
            resolve_infra(state_dir, durable=False, environ={"DATABASE_URL": dead}, log=lambda _: None):
        pass
    assert not (state_dir / "pg").exists(), "must not fall back to an embedded server"


def test_resolve_infra_uses_servers_that_answer_and_embeds_the_rest(state_dir: Path) -> None:
    with embedded_nats(state_dir / "outside-nats") as outside_url, \
            resolve_infra(state_dir, durable=False, environ={"NATS_URL": outside_url},
                          log=lambda _: None) as infra:
        assert infra.nats_url == outside_url and not infra.nats_embedded
        assert infra.postgres_embedded and answers(infra.database_url)
        assert not (state_dir / "nats").exists()
    assert not answers(infra.database_url, timeout=0.2)


# ---------------------------------------------------------------------------- the stack runner

class _Stack:
    """``python -m services.stack`` as a child, its output read line by line in a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.stack", *args], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[2])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout}s:\n" + "\n".join(self.output)) from None
            if line is None:
                raise AssertionError(f"exited before {text!r}:\n" + "\n".join(self.output))
            self.output.append(line)
            if text in line:
                return line

    def finish(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(queue.Empty):  # a grandchild may still hold the pipe open
            while (line := self.lines.get(timeout=5)) is not None:
                self.output.append(line)
        return code


@pytest.fixture
async def stack_env(infra: Infra) -> AsyncIterator[dict[str, str]]:
    """The session's NATS and a database of the test's own, as the stack's environment."""
    name = f"rb_stack_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    env = dict(os.environ, NATS_URL=infra.nats_url, DATABASE_URL=infra.dsn_for(name),
               BUS_NAMESPACE=f"t{uuid.uuid4().hex[:10]}", STREAM_NAME=f"T{uuid.uuid4().hex[:10]}")
    yield env
    await delete_stream(infra.nats_url, env["STREAM_NAME"])  # the stack created it on the shared server
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _run_stack_until_ready_then_interrupt(args: list[str], env: dict[str, str]) -> _Stack:
    stack = _Stack(args, env)
    stack.wait_for("Ctrl-C stops everything")
    stack.process.send_signal(signal.SIGINT)
    assert stack.finish() == 0, "\n".join(stack.output)
    assert any("stack     | stopped" in line for line in stack.output)
    return stack


async def test_stack_seeds_the_demo_once_and_stops_on_ctrl_c(stack_env: dict[str, str],
                                                              state_dir: Path) -> None:
    args = ["--no-services", "--state-dir", str(state_dir)]
    first = _run_stack_until_ready_then_interrupt(args, stack_env)
    second = _run_stack_until_ready_then_interrupt(args, stack_env)

    token = (state_dir / "demo-token").read_text().strip()
    assert (state_dir / "demo-token").stat().st_mode & 0o077 == 0, "the token file must be private"
    assert any("(funded now)" in line for line in first.output)
    assert not any("(funded now)" in line for line in second.output)
    conn = await asyncpg.connect(stack_env["DATABASE_URL"])
    try:
        users = await conn.fetch("SELECT id FROM users WHERE email = $1", DEMO_EMAIL)
        assert len(users) == 1
        user_id = users[0]["id"]
        tokens = await conn.fetch("SELECT token_hash FROM api_tokens WHERE user_id = $1", user_id)
        assert [r["token_hash"] for r in tokens] == [token_hash(token)]
        connections = await conn.fetch(
            "SELECT exchange_id, paper_account FROM exchange_connections WHERE user_id = $1", user_id)
        assert [tuple(r) for r in connections] == [("paper", DEMO_PAPER_ACCOUNT)]
        portfolios = await conn.fetch(
            "SELECT name, target_weights, rebalance_enabled, rebalance_interval, rebalance_threshold "
            "FROM portfolios WHERE user_id = $1", user_id)
        assert len(portfolios) == 1
        portfolio = portfolios[0]
        assert portfolio["name"] == "My Portfolio" and portfolio["rebalance_enabled"]
        assert json.loads(portfolio["target_weights"]) == {"BTC": "40", "ETH": "30", "SOL": "20", "ADA": "10"}
        assert portfolio["rebalance_interval"] == "hourly" and portfolio["rebalance_threshold"] == 10
        balances = dict(await conn.fetch(
            "SELECT asset, free FROM paper_balances WHERE account = $1", DEMO_PAPER_ACCOUNT))
        assert balances == {"USD": Decimal("10000")}, "a re-run must not fund the account again"
        assert await conn.fetchval("SELECT count(*) FROM paper_markets WHERE symbol = 'ADA/USD'") == 1
    finally:
        await conn.close()


def test_stack_stops_everything_and_fails_loudly_when_a_service_dies(stack_env: dict[str, str],
                                                                     state_dir: Path) -> None:
    # An invalid setting makes the service exit at start-up.
    env = dict(stack_env, BATCH_SIZE="not-a-number")
    stack = _Stack(["--services", "planner", "--no-demo", "--state-dir", str(state_dir)], env)
    assert stack.finish(timeout=120) == 1, "\n".join(stack.output)
    assert any("planner EXITED" in line for line in stack.output), "\n".join(stack.output)
    assert any(line.startswith("planner   | ") for line in stack.output), "child output is prefixed"


async def test_stack_refuses_to_start_when_a_service_module_is_missing(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("services.stack.runner.importlib.util.find_spec",
                        lambda name: None if name == "services.api.__main__" else object())
    assert await run_stack(StackOptions(state_dir=state_dir, services=("planner", "api"))) == 2
    assert "no module services.<name>.__main__ for: api" in capsys.readouterr().out
    assert not any(state_dir.iterdir()), "nothing may start before the check"


# ---------------------------------------------------------------------------- pure helpers

def test_trigger_curl_is_one_shell_line_posting_the_portfolio_with_the_token() -> None:
    line = trigger_curl("http://127.0.0.1:8001", "tok'en", "p-1")
    argv = shlex.split(line)
    assert argv[:5] == ["curl", "-sS", "-X", "POST", "http://127.0.0.1:8001/api/scheduler/trigger"]
    assert argv[argv.index("-d") + 1] == '{"portfolioId": "p-1"}'
    headers = [argv[i + 1] for i, a in enumerate(argv) if a == "-H"]
    assert "Authorization: Bearer tok'en" in headers and "Content-Type: application/json" in headers
    assert "\n" not in line


def test_child_env_points_every_service_at_the_stack_and_gives_each_its_own_ops_port() -> None:
    ports = StackPorts(api=8001, ops={name: 9000 + i for i, name in enumerate(SERVICES)})
    specs = child_specs("/venv/python", {"PATH": "/bin", "NATS_URL": "nats://elsewhere:1"},
                        nats_url="nats://127.0.0.1:5", database_url="postgresql://h/db", ports=ports)
    assert [s.name for s in specs] == list(SERVICES)
    assert {s.argv for s in specs} == {("/venv/python", "-m", f"services.{n}") for n in SERVICES}
    assert all(s.env["NATS_URL"] == "nats://127.0.0.1:5" and s.env["PATH"] == "/bin" for s in specs)
    assert all(s.env["DATABASE_URL"] == "postgresql://h/db" and s.env["API_PORT"] == "8001" for s in specs)
    assert len({s.env["OPS_PORT"] for s in specs}) == len(SERVICES)


def test_prefix_line_aligns_service_names() -> None:
    assert prefix_line("api", "hello\n") == "api       | hello"
    assert prefix_line("scheduler", "x") == "scheduler | x"
    assert with_database("postgresql://u@h:1/postgres?sslmode=off", "rb") == "postgresql://u@h:1/rb?sslmode=off"


@pytest.mark.e2e
async def test_stack_runs_the_demo_end_to_end_from_the_printed_curl(stack_env: dict[str, str],
                                                                   state_dir: Path) -> None:
    api_port = free_port()
    stack = _Stack(["--state-dir", str(state_dir), "--api-port", str(api_port)], stack_env)
    try:
        stack.wait_for("Ctrl-C stops everything", timeout=120)
        curl = next(line for line in stack.output if "/api/scheduler/trigger" in line)
        pids = [int(m.group(1)) for line in stack.output if (m := re.search(r"started \w+ \(pid (\d+)", line))]
        assert len(pids) == len(SERVICES)
        token = (state_dir / "demo-token").read_text().strip()
        argv = shlex.split(curl.split("| ", 1)[1].strip())
        url, body = argv[4], json.loads(argv[argv.index("-d") + 1])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=10) as client:
            triggered = await client.post(url, json=body, headers=headers)
            # 409: the scheduler's first check already started a run for the fresh portfolio.
            assert triggered.status_code in (202, 409), triggered.text
            history_url = f"http://127.0.0.1:{api_port}/api/v1/portfolios/{body['portfolioId']}/history"
            runs: list[dict[str, Any]] = []
            for _ in range(600):
                page = await client.get(history_url, headers=headers)
                assert page.status_code == 200, page.text
                runs = page.json()["runs"]
                if any(run["status"] == "succeeded" for run in runs):
                    break
                await asyncio.sleep(0.1)
        succeeded = [run for run in runs if run["status"] == "succeeded"]
        assert succeeded, f"no completed run in the history: {runs}\n" + "\n".join(stack.output[-40:])
        assert succeeded[0]["ordersExecuted"] > 0, "an all-cash demo account must trade on its first run"
    finally:
        stack.process.send_signal(signal.SIGINT)
        code = stack.finish(timeout=60)
    assert code == 0, "\n".join(stack.output[-40:])
    assert not any(_process_alive(pid) for pid in pids), "a service outlived the stack"


def test_local_secret_keys_are_made_once_private_and_yield_to_the_environment(state_dir: Path) -> None:
    first = local_secret_keys(state_dir, {})
    assert Fernet(first.encode())  # a usable key
    assert (state_dir / "secret-key").stat().st_mode & 0o077 == 0
    assert local_secret_keys(state_dir, {}) == first
    assert local_secret_keys(state_dir, {"REBALANCER_SECRET_KEYS": "k1,k2"}) == "k1,k2"
