"""Processes of the pipeline benchmark: the services started as separate OS processes, and a
sampler that follows the CPU time and resident memory of each of them, of nats-server and of the
PostgreSQL server (postmaster plus backends) every 0.2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench.pipeline_stats import ProcessUsage

SERVICES = ("ledger", "pricer", "planner", "executor")
MB = 1024 * 1024


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path


def start_services(env: Mapping[str, str], replicas: int, log_dir: Path,
                   services: Sequence[str] = SERVICES) -> list[ServiceProcess]:
    """``python -m services.<name>``, ``replicas`` of each, output to ``log_dir/<name>.log``."""
    started: list[ServiceProcess] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for service in services:
        for replica in range(1, replicas + 1):
            name = f"{service}#{replica}"
            log_file = log_dir / f"{service}-{replica}.log"
            with log_file.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", f"services.{service}"], env=dict(env), stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            started.append(ServiceProcess(name, process, log_file))
    return started


def stop_services(services: Sequence[ServiceProcess], grace_s: float = 15.0) -> None:
    for s in services:
        if s.process.poll() is None:
            s.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for s in services:
        try:
            s.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait()


def dead_services(services: Sequence[ServiceProcess]) -> list[str]:
    return [f"{s.name} (exit {s.process.returncode}, log {s.log_file})"
            for s in services if s.process.poll() is not None]


def listener_pid(url: str) -> int | None:
    """The process listening on the URL's TCP port on this machine, if we can see it."""
    port = urlsplit(url.split(",")[0]).port
    if port is None:
        return None
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


@dataclass
class _Group:
    """One measured thing: a process, or a server with its children (PostgreSQL backends)."""

    name: str
    root: psutil.Process
    with_children: bool
    cpu_start: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_last: float = 0.0
    cpu_last: float = 0.0
    children: dict[int, psutil.Process] = field(default_factory=dict)

    def read(self) -> tuple[float, float]:
        """(CPU seconds, RSS bytes) now. Exited children's CPU is in the root's children_* times
        once the root reaps them, so live processes plus those counters make the total."""
        procs = [self.root]
        if self.with_children:
            live: dict[int, psutil.Process] = {}
            for child in self.root.children(recursive=True):
                live[child.pid] = self.children.get(child.pid, child)  # keep psutil's cached handle
            self.children = live
            procs.extend(live.values())
        cpu = 0.0
        rss = 0.0
        for index, proc in enumerate(procs):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    if index == 0:
                        cpu += times.children_user + times.children_system
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        return cpu, rss


class Sampler:
    """Samples every group every ``interval_s`` in a thread; ``mark_start`` sets the CPU baseline."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self._groups: list[_Group] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._machine_start = 0.0
        self._wall_start = 0.0
        self.machine_busy_fraction = 0.0

    def add(self, name: str, pid: int, *, with_children: bool = False) -> None:
        self._groups.append(_Group(name, psutil.Process(pid), with_children))

    def _sample(self) -> None:
        with self._lock:
            for group in self._groups:
                cpu, rss = group.read()
                group.cpu_last = cpu
                group.rss_last = rss
                group.rss_peak = max(group.rss_peak, rss)

    def mark_start(self) -> None:
        self._machine_start = _machine_busy_seconds()
        self._wall_start = time.monotonic()
        with self._lock:
            for group in self._groups:
                cpu, rss = group.read()
                group.cpu_start = group.cpu_last = cpu
                group.rss_start = group.rss_peak = group.rss_last = rss

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self._sample()

        self._thread = threading.Thread(target=loop, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[ProcessUsage]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        usages = [
            ProcessUsage(g.name, g.cpu_last - g.cpu_start, g.rss_start / MB, g.rss_peak / MB, g.rss_last / MB)
            for g in self._groups
        ]
        # Everything else the machine ran meanwhile (other users' jobs compete for the same cores).
        busy = _machine_busy_seconds() - self._machine_start
        others = max(busy - sum(u.cpu_seconds for u in usages), 0.0)
        usages.append(ProcessUsage("(other processes)", others, 0.0, 0.0, 0.0))
        self.machine_busy_fraction = busy / ((time.monotonic() - self._wall_start) * (os.cpu_count() or 1))
        return usages


def _machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0))


def this_process_pid() -> int:
    return os.getpid()
