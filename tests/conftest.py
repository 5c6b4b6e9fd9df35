"""Fixtures for every tier.

Real-service fixtures (PostgreSQL, RabbitMQ, MariaDB) skip on a laptop without the service
but fail under CI=true: in CI a skipped integration test is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pika
import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from services.api.app import create_app
from shared.db import make_engine, make_session_factory
from shared.db.migrate import upgrade
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, QUEUE_SCHEDULER, RecordingPublisher
from shared.models import Base
from tests.support import ApiClient, free_port, make_settings, wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_DSN = os.environ.get("BIAPP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("BIAPP_TEST_AMQP_HOST", "127.0.0.1")
MYSQL_HOST = os.environ.get("BIAPP_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("BIAPP_TEST_MYSQL_PORT", "3306"))


def require(service: str, error: Exception | None) -> None:
    if error is None:
        return
    message = f"{service} is not reachable: {error}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: real services are required)")
    pytest.skip(message)


# --- PostgreSQL ------------------------------------------------------------------


def create_pg_database(prefix: str) -> str:
    """A new, empty database `<prefix>_<pid>_<hex>` on the test server; drop it with `drop_pg_database`."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        require("PostgreSQL", exc)
    return name


def pg_app_url(database: str) -> str:
    """The SQLAlchemy URL of `database` on the test server, as the application connects to it."""
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_database_url():
    name = create_pg_database("biapp_test")
    url = pg_app_url(name)
    upgrade(url)
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_engine(pg_database_url):
    engine = make_engine(pg_database_url)
    yield engine
    engine.dispose()


def truncate_all(engine: sa.Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def pg_url(pg_database_url, pg_engine):
    """A migrated PostgreSQL database, emptied before each test."""
    truncate_all(pg_engine)
    return pg_database_url


@pytest.fixture
def pg_session_factory(pg_url, pg_engine):
    return make_session_factory(pg_engine)


# --- PostgreSQL data sources: a database of their own, read by a plain login -------------

PG_READER_PASSWORD = "reader-secret"  # trust auth ignores it; a stored password still exercises decryption


def pg_admin_dsn(database: str) -> str:
    """A libpq URL for the admin (superuser) login to `database` on the test server."""
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


@dataclass(frozen=True)
class PgReader:
    """A login role for data sources: no superuser, no replication, no bypassrls, no server-file roles."""

    username: str
    password: str


@dataclass(frozen=True)
class PgDataDatabase:
    """A database reports read from, never the application's own, and the reader's connection fields.

    Tables are created through `execute` / `admin_engine` (as the admin login); the reader can SELECT
    every table the admin creates in any schema, and create none.
    """

    host: str
    port: int
    database: str
    username: str
    password: str
    admin_engine: sa.Engine

    @property
    def admin_dsn(self) -> str:
        return pg_admin_dsn(self.database)

    def execute(self, *statements: str) -> None:
        """Run DDL/DML on this database as the admin, each statement committed."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def source_fields(self) -> dict:
        """The fields of a PostgreSQL data source reading this database as the reader (no password)."""
        return {
            "kind": "postgresql",
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.username,
        }


def _pg_server() -> tuple[str, int]:
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    return info.get("host") or "127.0.0.1", int(info.get("port") or 5432)


@pytest.fixture(scope="session")
def pg_reader():
    """The session's data-source login role `biapp_reader_<pid>` (LOGIN and nothing else), dropped at the end.

    Databases it reads are opened to it with `grant_reader`; drop them before this fixture ends.
    """
    name = f"biapp_reader_{os.getpid()}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
            conn.execute(
                f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
                f" PASSWORD '{PG_READER_PASSWORD}'"
            )
    except psycopg.Error as exc:
        require("PostgreSQL", exc)
    yield PgReader(name, PG_READER_PASSWORD)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{name}"')  # only what is left in the admin database
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def grant_reader(database: str, reader: str) -> None:
    """Open `database` to `reader` for reading: CONNECT, USAGE on schemas, SELECT on tables, now and later.

    Objects the admin login creates afterwards (tables, schemas) are covered by default privileges.
    Nobody but the owner may create objects in schema public (the PostgreSQL 15 default, made explicit).
    """
    with psycopg.connect(pg_admin_dsn(database), autocommit=True) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}"')
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
        ).fetchall()
        for (schema,) in schemas:
            conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{reader}"')
        conn.execute(f'ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO "{reader}"')
        conn.execute(f'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO "{reader}"')


def create_data_database(prefix: str, reader: str) -> str:
    """A new, empty database `<prefix>_<pid>_<hex>` opened to `reader`; drop it with `drop_pg_database`."""
    name = create_pg_database(prefix)
    grant_reader(name, reader)
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_data_database(pg_reader):
    """A separate database `biapp_data_<pid>_<hex>` for data sources, read by `pg_reader`: a PgDataDatabase."""
    name = create_data_database("biapp_data", pg_reader.username)
    host, port = _pg_server()
    admin_url = pg_admin_dsn(name).replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
    yield PgDataDatabase(host, port, name, pg_reader.username, pg_reader.password, engine)
    engine.dispose()
    drop_pg_database(name)


# --- MySQL / MariaDB (a data source kind) ------------------------------------------


def mysql_admin(database: str | None = None) -> pymysql.Connection:
    """A root connection to the test MariaDB (root, empty password), autocommit."""
    return pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
        connect_timeout=5,
        charset="utf8mb4",
    )


@pytest.fixture(scope="session")
def mysql_url():
    """A fresh, empty MariaDB database for this test session (as root), dropped at the end."""
    name = f"biapp_test_{os.getpid()}"
    try:
        with mysql_admin() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    except pymysql.Error as exc:
        require("MariaDB", exc)
    yield f"mysql+pymysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{name}?charset=utf8mb4"
    with mysql_admin() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


# Quotes, an umlaut and CJK: the password must survive encryption and the driver's encoding.
MYSQL_READER_PASSWORD = "s3cr3t-Pässword'; -- 東京"


@dataclass(frozen=True)
class MySqlReader:
    """A SELECT-only MariaDB login for data sources (no FILE, no SUPER) on the session's database."""

    host: str
    port: int
    database: str
    username: str
    password: str


@pytest.fixture(scope="session")
def mysql_reader(mysql_url):
    """`biapp_reader_<pid>`@'%' and @'localhost' with SELECT on the `mysql_url` database only: a MySqlReader.

    Tables are still created as root (`mysql_admin`); the grant covers them whenever they appear.
    """
    database = sa.engine.make_url(mysql_url).database
    name = f"biapp_reader_{os.getpid()}"
    with mysql_admin() as conn, conn.cursor() as cursor:
        for host in ("%", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")
            # With arguments PyMySQL formats the statement itself: a literal % is written %%.
            escaped = host.replace("%", "%%")
            cursor.execute(f"CREATE USER '{name}'@'{escaped}' IDENTIFIED BY %s", (MYSQL_READER_PASSWORD,))
            cursor.execute(f"GRANT SELECT ON `{database}`.* TO '{name}'@'{host}'")
    yield MySqlReader(MYSQL_HOST, MYSQL_PORT, database, name, MYSQL_READER_PASSWORD)
    with mysql_admin() as conn, conn.cursor() as cursor:
        for host in ("%", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


# --- RabbitMQ ----------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    return result.returncode == 0


@pytest.fixture(scope="session")
def amqp_url():
    """A vhost of its own for this test session (the default vhost if rabbitmqctl is unavailable)."""
    try:
        pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{AMQP_HOST}:5672/%2F")).close()
    except Exception as exc:  # any connection failure means "not reachable"
        require("RabbitMQ", exc)
    vhost = f"biapp_test_{os.getpid()}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        yield f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}?heartbeat=60"
        _rabbitmqctl("delete_vhost", vhost)
    else:
        yield f"amqp://guest:guest@{AMQP_HOST}:5672/%2F?heartbeat=60"


def purge_queues(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for base in (QUEUE_SCHEDULER, QUEUE_RENDERER, QUEUE_RENDERER_HEAVY, QUEUE_MAILER):
            for queue in (base, f"{base}.DQ", f"{base}.XQ"):
                channel = connection.channel()
                try:
                    channel.queue_purge(queue)
                except pika.exceptions.ChannelClosedByBroker:
                    pass  # not declared yet
                finally:
                    if channel.is_open:
                        channel.close()
    finally:
        connection.close()


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


@pytest.fixture
def amqp(amqp_url):
    """A RabbitMQ vhost whose biapp queues are empty at the start of the test."""
    purge_queues(amqp_url)
    return amqp_url


# --- SMTP --------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler that remembers every message; `reply` may be swapped by a test."""

    messages: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message, envelope.content))
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    recorder: SmtpRecorder

    @property
    def messages(self) -> list[ReceivedMail]:
        with self.recorder.lock:
            return list(self.recorder.messages)

    def wait_for(self, count: int, timeout: float = 30) -> list[ReceivedMail]:
        wait_until(lambda: len(self.messages) >= count, timeout, what=f"{count} emails")
        return self.messages


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback (aiosmtpd) that records what it receives."""
    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder)
    controller.stop()


# --- API on SQLite (unit tier: real Flask, fake broker) -----------------------------


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'biapp.db'}"
    upgrade(url)
    return url


@dataclass
class ApiHarness:
    app: object
    publisher: RecordingPublisher
    session_factory: object
    settings: object

    def client(self) -> ApiClient:
        return ApiClient(self.app.test_client())

    def create_user(self, email: str, role: str = "analyst", password: str = "correct horse battery") -> ApiClient:
        from shared import users
        from shared.db import transaction

        with transaction(self.session_factory) as session:
            users.create_user(session, email=email, password=password, role=role)
        return self.client().login(email, password)


def build_harness(database_url: str, tmp_path, **env) -> ApiHarness:
    settings = make_settings(BIAPP_DATABASE_URL=database_url, BIAPP_SQLITE_ROOT=str(tmp_path / "sqlite"), **env)
    (tmp_path / "sqlite").mkdir(exist_ok=True)
    publisher = RecordingPublisher()
    factory = make_session_factory(make_engine(settings.database_url))
    app = create_app(settings, publisher=publisher, session_factory=factory)
    app.testing = True
    return ApiHarness(app, publisher, factory, settings)


@pytest.fixture
def api(sqlite_url, tmp_path) -> ApiHarness:
    return build_harness(sqlite_url, tmp_path)
