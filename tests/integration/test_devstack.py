"""Embedded servers: they start, serve, stop, and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from services.common.devstack import (
    DevstackError,
    answers,
    embedded_nats,
    embedded_postgres,
    free_port,
    resolve_infra,
)

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


async def test_embedded_postgres_runs_unprivileged_serves_and_leaves_no_process(state_dir: Path) -> None:
    data_dir = state_dir / "pg" / "data"
    with embedded_postgres(data_dir, durable=False) as dsn:
        pid = _postmaster_pid(data_dir)
        assert _process_alive(pid)
        if os.geteuid() == 0:
            assert _uid_of(pid) != 0, "PostgreSQL must not run as root"
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT 1 + 1") == 2
            assert await conn.fetchval("SHOW fsync") == "off"
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
