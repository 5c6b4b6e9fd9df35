"""Fault-suite fixtures: a PostgreSQL cluster and a RabbitMQ node of the test's own, to stop and start.

The machine's shared PostgreSQL (127.0.0.1:5432) and RabbitMQ (node rabbit@localhost, 5672) are never
stopped: other tests and CI use them. A test that takes a service down gets a private one, made for the
test and removed after it:

* `private_postgres`: `initdb` + `pg_ctl` on a free port, 127.0.0.1 only, trust auth, fsync off
  (run as the `postgres` OS user when the tests run as root: initdb refuses root).
* `private_rabbit`: a RabbitMQ node `biapp_fault_<pid>_<hex>@localhost` on free ports, with its own
  data, logs, config, no plugins and its own Erlang cookie (under its own HOME), so its `rabbitmqctl`
  cannot even authenticate to the shared node.

Missing binaries skip the tests on a laptop and fail them under CI=true, like every real service
(`scripts/ensure_services.sh` installs them). Tests marked `chaos` (long soaks) run only when the
`-m` expression names them: `make chaos`.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pika
import psycopg
import pytest

from shared.db import make_engine, make_session_factory
from shared.db.migrate import upgrade
from tests.conftest import PG_ADMIN_DSN, require
from tests.support import free_port

RABBIT_SCRIPTS = Path(os.environ.get("BIAPP_TEST_RABBITMQ_SCRIPTS", "/usr/lib/rabbitmq/bin"))


def pytest_collection_modifyitems(config, items):
    """`chaos` tests (minutes each) are left out unless the -m expression mentions them."""
    if "chaos" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("chaos") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def service_port() -> int:
    """A free port below the kernel's ephemeral range, for a server that will be stopped and started.

    `free_port()` hands out an ephemeral port; while the server is down, any outgoing connection on
    the machine may take it and the restart fails (seen: dist_port_already_used during an outage).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(20000, max(20001, low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else the ones on PATH."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(path).parent.name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for directory in reversed(candidates):
        if Path(directory, "initdb").exists() and Path(directory, "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


class PrivatePostgres:
    """A throwaway cluster: `url`, `dsn(database)`, `stop()`, `start()`, `restart()`, `destroy()`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.as_postgres = os.geteuid() == 0
        # Not under pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="biapp-fault-pg-"))
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = service_port()
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database as the superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr}\n{_tail(self.log)}")

    def init(self) -> None:
        began = time.monotonic()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            # Safe for a process crash (the tests' kind), not for an OS crash: no test makes one.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        with open(self.data / "postgresql.conf", "a") as conf:  # initdb made it writable for its owner only
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))
        self.start()
        self.started_in = time.monotonic() - began

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` closes sessions cleanly; `immediate` is a crash (recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        try:
            psycopg.connect(self.dsn(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        """A new database; returns its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own on a free port, removed after the test."""
    bindir = postgres_bindir()
    if bindir is None:
        require("PostgreSQL server binaries (initdb, pg_ctl)", FileNotFoundError("/usr/lib/postgresql/*/bin"))
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _user_exists("postgres")):
        require("PostgreSQL as root", RuntimeError("initdb refuses root; needs runuser and a postgres user"))
    cluster = PrivatePostgres(bindir)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- RabbitMQ --------------------------------------------------------------------------------------


class PrivateRabbit:
    """A throwaway RabbitMQ node: `url(vhost)`, `stop()`, `start()`, `queue_depth()`, `destroy()`.

    Everything it reads or writes is under its own directory: config, enabled plugins (none), env file
    (not /etc/rabbitmq/rabbitmq-env.conf, which names the shared node), data, logs and the Erlang
    cookie in its own HOME. Every rabbitmqctl call names this node, never the shared one.
    """

    def __init__(self, scripts: Path):
        self.scripts = scripts
        self.root = Path(tempfile.mkdtemp(prefix="biapp-fault-rabbit-"))
        self.node = f"biapp_fault_{os.getpid()}_{uuid.uuid4().hex[:4]}@localhost"
        self.port = service_port()
        self.dist_port = service_port()
        while self.dist_port == self.port:
            self.dist_port = service_port()
        self.log = self.root / "server.log"
        self.process: subprocess.Popen | None = None
        self.started_in: float | None = None
        home = self.root / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[].\n")  # no management plugin: faster start
        (self.root / "rabbitmq-env.conf").write_text("")
        # guest may log in from loopback only (the default, stated here).
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{urllib.parse.quote(vhost, safe='')}?heartbeat=60"

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        assert self.node.startswith("biapp_fault_")  # never the shared node
        result = subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result

    def start(self, timeout: float = 90) -> float:
        """Start the node and wait until it accepts AMQP connections; returns the seconds it took."""
        assert not self.is_running(), "already running"
        began = time.monotonic()
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(self.scripts / "rabbitmq-server")],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = began + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited ({self.process.returncode}):\n{_tail(self.log)}")
            # Fails at once until the node has registered with epmd, then waits for the boot to finish.
            if self.ctl("await_startup", "--timeout", "30", check=False, timeout=40).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.node} did not start in {timeout}s:\n{_tail(self.log)}")
            time.sleep(0.2)
        self._wait_for_amqp(deadline)
        return time.monotonic() - began

    def _wait_for_amqp(self, deadline: float) -> None:
        while True:
            try:
                pika.BlockingConnection(pika.URLParameters(self.url())).close()
                return
            except pika.exceptions.AMQPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        """Stop the whole node (the Erlang VM ends; clients see their connections drop, then refused)."""
        if not self.is_running():
            return
        self.ctl("stop", check=False, timeout=timeout)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def add_vhost(self, name: str) -> str:
        """A new vhost guest may use; returns its URL."""
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return self.url(name)

    def queue_depth(self, vhost: str, queue: str) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self.url(vhost)))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()

    def consumers(self, vhost: str, queue: str) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self.url(vhost)))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0  # not declared yet
        finally:
            if connection.is_open:
                connection.close()

    def destroy(self) -> None:
        if self.is_running():
            try:
                self.stop(timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_rabbit():
    """A RabbitMQ node of this test's own on free ports, removed after the test."""
    missing = [name for name in ("rabbitmq-server", "rabbitmqctl") if not (RABBIT_SCRIPTS / name).exists()]
    if missing or shutil.which("erl") is None:
        require("RabbitMQ server binaries", FileNotFoundError(f"{RABBIT_SCRIPTS}/rabbitmq-server or erl"))
    node = PrivateRabbit(RABBIT_SCRIPTS)
    try:
        node.started_in = node.start()
        yield node
    finally:
        node.destroy()


# --- The application database, on the shared server --------------------------------------------------


@pytest.fixture
def fault_database():
    """A migrated application database of this test's own on the shared PostgreSQL: (url, session factory)."""
    name = f"biapp_fault_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        require("PostgreSQL", exc)
    url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    upgrade(url)
    engine = make_engine(url)
    yield url, make_session_factory(engine)
    engine.dispose()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
