"""free_port: ports for the stack's services and the tests' servers, clear of the range the OS
gives outgoing connections, never the same twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.common import devstack


def test_ports_are_below_the_ephemeral_range_bindable_and_never_repeated() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if start - devstack._PORTS_FROM < 1000:
        pytest.skip(f"this machine's ephemeral range starts at {start}: no room below it")
    ports = [devstack.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(devstack._PORTS_FROM <= p < start for p in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free when handed out


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        offered = iter([in_use, free])
        monkeypatch.setattr(devstack, "_ephemeral_range_start", lambda: 65000)
        monkeypatch.setattr(devstack._random, "randrange", lambda _a, _b: next(offered))
        assert devstack.free_port() == free


def test_without_room_below_the_ephemeral_range_the_os_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_ephemeral_range_start", lambda: 0)
    ports = {devstack.free_port() for _ in range(20)}
    assert len(ports) == 20
