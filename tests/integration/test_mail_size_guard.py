"""Attachments over BIAPP_MAX_ATTACHMENT_BYTES are zipped, and if still too large become signed links."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from services.mailer.deliver import deliver_execution
from services.mailer.transport import SmtplibTransport
from shared import links
from shared.context import build_context
from shared.messaging import RecordingPublisher
from tests.conftest import build_harness
from tests.integration.test_mail_helpers import ScriptedHandler, execution_state, seed_rendered, start_smtp
from tests.support import make_settings

LIMIT = 50_000
BIG_CSV = b"region,revenue\r\n" + b"".join(b"EMEA,%d\r\n" % n for n in range(20_000))  # ~200 KB, compresses well
NOISE_PDF = b"%PDF-1.7\n" + os.urandom(120_000)  # does not compress
SMALL_CSV = b"a,b\r\n1,2\r\n"


@pytest.fixture
def delivered(pg_url, pg_session_factory):
    settings = make_settings(
        BIAPP_DATABASE_URL=pg_url,
        BIAPP_MAX_ATTACHMENT_BYTES=str(LIMIT),
        BIAPP_PUBLIC_URL="https://reports.example.com",
        BIAPP_LINK_EXPIRY_HOURS="48",
    )
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory)
    handler = ScriptedHandler()
    controller, port = start_smtp(handler)
    try:
        seeded = seed_rendered(
            pg_session_factory,
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            recipients=["ana@example.com"],
            files=[
                ("csv", "revenue.csv", "text/csv; charset=utf-8", BIG_CSV),
                ("pdf", "revenue.pdf", "application/pdf", NOISE_PDF),
            ],
        )
        deliver_execution(ctx, SmtplibTransport(), seeded.execution_id)
    finally:
        controller.stop()
    return settings, seeded, handler


def test_large_compressible_file_is_attached_zipped(delivered):
    _, _, handler = delivered
    (mail,) = handler.received
    attachments = {part.get_filename(): part for part in mail.message.iter_attachments()}
    assert set(attachments) == {"revenue.csv.zip"}
    archive = zipfile.ZipFile(io.BytesIO(attachments["revenue.csv.zip"].get_payload(decode=True)))
    assert archive.namelist() == ["revenue.csv"]
    assert hashlib.sha256(archive.read("revenue.csv")).hexdigest() == hashlib.sha256(BIG_CSV).hexdigest()
    assert attachments["revenue.csv.zip"].get_content_type() == "application/zip"


def test_file_too_large_even_zipped_becomes_a_link_that_downloads_without_login(
    delivered, pg_url, pg_session_factory, tmp_path
):
    settings, seeded, handler = delivered
    (mail,) = handler.received
    text = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    # Every file is offered as a link; the one that could not be attached says so.
    assert re.search(r"- revenue\.pdf \(PDF, [^)]*too large to attach\)", text)
    assert re.search(r"- revenue\.csv \(CSV, [^)]*attached\)", text)
    urls = re.findall(r"revenue\.pdf \([^)]*\)\s+(https://reports\.example\.com/api/links/[\w.\-]+)", text)
    assert len(urls) == 1 and urls[0] in html
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"

    harness = build_harness(pg_url, tmp_path, BIAPP_PUBLIC_URL="https://reports.example.com")
    anonymous = harness.client()
    response = anonymous.get(urls[0].removeprefix("https://reports.example.com"))
    assert response.status_code == 200
    assert hashlib.sha256(response.get_data()).hexdigest() == hashlib.sha256(NOISE_PDF).hexdigest()
    assert response.headers["Content-Type"] == "application/pdf"

    tampered = anonymous.get(urls[0].removeprefix("https://reports.example.com")[:-3] + "xyz")
    assert tampered.status_code == 404

    token = urls[0].rsplit("/", 1)[1]
    artifact_id = links.verify(settings, token, now=datetime.now(UTC))
    expired = links.sign(settings, artifact_id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    gone = anonymous.get(f"/api/links/{expired}")
    assert gone.status_code == 410 and gone.get_json()["code"] == "gone"


def test_link_expiry_follows_the_setting_but_never_outlives_the_file():
    settings = make_settings(BIAPP_LINK_EXPIRY_HOURS="72")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert links.link_expiry(settings, now=now, artifact_expires_at=now + timedelta(days=30)) == now + timedelta(
        hours=72
    )
    assert links.link_expiry(settings, now=now, artifact_expires_at=now + timedelta(hours=5)) == now + timedelta(
        hours=5
    )
    token = links.sign(settings, uuid.uuid4(), expires_at=now + timedelta(hours=1))
    assert links.verify(settings, token, now=now + timedelta(minutes=59))
