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
from shared.messaging import QUEUE_MAILER, QUEUE_RENDERER, QUEUE_SCHEDULER, RecordingPublisher
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


@pytest.fixture(scope="session")
def pg_database_url():
    name = f"biapp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        require("PostgreSQL", exc)
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
        for base in (QUEUE_SCHEDULER, QUEUE_RENDERER, QUEUE_MAILER):
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
