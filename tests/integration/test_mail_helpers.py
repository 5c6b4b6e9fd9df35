"""Building blocks for mail tests: a rendered execution with files, and SMTP servers that misbehave.

This module holds no tests; the mail test modules import from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shared import destinations as destination_rules
from shared.db import transaction
from shared.models import Artifact, Delivery, EmailConfig, ReportExecution, SavedQuery, ScheduledReport, User
from shared.models.destinations import renumbered
from shared.security.crypto import SecretBox
from shared.storage import DatabaseStore
from tests.support import free_port

SMTP_PASSWORD = "s3cret-Pa55word-never-shown"
SMTP_USER = "mailer@example.com"
RUN_AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class Seeded:
    execution_id: str
    report_id: uuid.UUID
    owner_email: str
    signing_secrets: dict = field(default_factory=dict)  # destination id -> webhook signing secret


def seed_rendered(
    factory,
    settings,
    *,
    smtp_host: str,
    smtp_port: int,
    security: str = "none",
    username: str | None = None,
    password: str | None = None,
    recipients: list[str] = (),
    cc: list[str] = (),
    files: list[tuple[str, str, str, bytes]] = (),
    subject: str | None = "Revenue {{date}}",
    body: str | None = None,
    trigger: str = "schedule",
    row_count: int = 3,
    name: str = "Weekly revenue",
    timezone: str = "Europe/Berlin",
    destinations: list[dict] = (),
) -> Seeded:
    """A user, their SMTP config, a report and an execution in state `rendered` with `files` stored."""
    box = SecretBox(settings.fernet_keys)
    owner_email = f"owner-{uuid.uuid4().hex[:6]}@example.com"
    with transaction(factory) as session:
        owner = User(email=owner_email, password_hash="not-a-hash", role="analyst")
        session.add(owner)
        session.flush()
        session.add(
            EmailConfig(
                owner_id=owner.id,
                host=smtp_host,
                port=smtp_port,
                security=security,
                username=username,
                password_encrypted=box.encrypt(password) if password else None,
                from_address="reports@example.com",
                from_name="BIApp Reports",
                reply_to="analytics@example.com",
            )
        )
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        report = ScheduledReport(
            owner_id=owner.id,
            name=name,
            saved_query_id=query.id,
            schedule={"frequency": "daily", "time": "09:00", "timezone": timezone},
            timezone=timezone,
            recipients=list(recipients),
            cc=list(cc),
            formats=sorted({f[0] for f in files}),
            subject=subject,
            body=body,
        )
        added = destination_rules.build(list(destinations), [], box, settings)
        report.destinations = renumbered([*report.destinations, *added])
        session.add(report)
        session.flush()
        planned = destination_rules.planned(report.destinations, trigger="schedule")
        if trigger == "test":
            planned = [{"address": owner_email, "kind": "to"}]
        secrets = {d.id: d.signing_secret_once for d in added if getattr(d, "signing_secret_once", None)}
        execution = ReportExecution(
            report_id=report.id,
            trigger=trigger,
            status="rendered",
            scheduled_for=RUN_AT,
            queued_at=RUN_AT,
            rendered_at=RUN_AT,
            row_count=row_count,
            recipients=planned,
        )
        session.add(execution)
        session.flush()
        store = DatabaseStore()
        for fmt, filename, content_type, data in files:
            artifact = Artifact(
                execution_id=execution.id,
                format=fmt,
                filename=filename,
                content_type=content_type,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                storage="database",
                expires_at=datetime.now(UTC) + timedelta(days=30),
            )
            session.add(artifact)
            session.flush()
            store.save(session, artifact, io.BytesIO(data))
    return Seeded(str(execution.id), report.id, owner_email, secrets)


def execution_state(factory, execution_id: str) -> tuple[ReportExecution, dict[str, Delivery]]:
    with transaction(factory) as session:
        execution = session.get(ReportExecution, uuid.UUID(execution_id))
        deliveries = session.execute(sa.select(Delivery).where(Delivery.execution_id == execution.id)).scalars().all()
        session.expunge_all()
    return execution, {d.recipient: d for d in deliveries}


# --- SMTP servers that misbehave on purpose ----------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class ScriptedHandler:
    """Records accepted messages; `rcpt_replies` / `data_replies` script answers per recipient.

    Each scripted entry is a list consumed one reply per attempt; once empty the
    server accepts. `stall_data` makes DATA hang until `release` is set.
    """

    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    data_started: threading.Event = field(default_factory=threading.Event)
    stall_after: int | None = None  # stall the DATA of the (n+1)-th message
    stall_seconds: float = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        with self.lock:
            script = self.rcpt_replies.get(address)
            if script:
                return script.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        recipient = envelope.rcpt_tos[0]
        with self.lock:
            script = self.data_replies.get(recipient)
            if script:
                return script.pop(0)
            stall = self.stall_after is not None and len(self.received) == self.stall_after
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            # Accepted (queued for delivery) before the reply goes out: if the client dies now,
            # the server has the message but the client never learns it.
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, envelope.content))
        if stall:
            self.data_started.set()
            await asyncio.sleep(self.stall_seconds)
        return "250 OK"

    def copies(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
            for mail in self.received:
                for rcpt in mail.recipients:
                    counts[rcpt] = counts.get(rcpt, 0) + 1
        return counts


class PasswordCheck:
    def __init__(self, username: str, password: str):
        self.username = username.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


def start_smtp(handler, **kwargs) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


def self_signed(tmp_path) -> tuple[str, str]:
    """A CA-less self-signed certificate for 127.0.0.1/localhost: (cert_file, key_file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "smtp-cert.pem"
    key_file = tmp_path / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)
