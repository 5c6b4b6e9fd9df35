"""Webhook, Slack and Teams delivery against real local HTTP receivers and a real PostgreSQL ledger.

Each channel meets a receiver that answers 200, 429 with Retry-After, 500 then 200, 400, or
stalls: exactly one accepted delivery per destination and run, partial when one destination
fails for good, and nothing retried past the retry window.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from services.mailer.deliver import RetryDelivery, deliver_execution
from services.mailer.transport import SmtplibTransport
from services.renderer.render import render_execution
from services.scheduler.sweep import sweep_stuck_executions
from shared import charts
from shared.clock import FixedClock
from shared.context import build_context
from shared.db import transaction
from shared.messaging import DELIVER_REPORT, RecordingPublisher
from shared.metrics import DELIVERIES
from shared.models import ReportExecution
from shared.query.columns import ColumnInfo
from tests.integration.channel_receivers import Receivers
from tests.integration.test_mail_helpers import ScriptedHandler, execution_state, seed_rendered, start_smtp
from tests.support import make_settings

CSV = b"region,revenue\r\nEMEA,1200.50\r\n<b>APAC</b>,99\r\n"
START = datetime(2026, 3, 2, 8, 5, tzinfo=UTC)
CHANNELS = ("webhook", "slack", "teams")


@pytest.fixture
def receivers():
    running = Receivers().start()
    yield running
    running.stop()


@pytest.fixture
def smtp():
    handler = ScriptedHandler()
    controller, port = start_smtp(handler)
    yield handler, port
    controller.stop()


@pytest.fixture
def settings(pg_url, receivers):
    return make_settings(
        BIAPP_DATABASE_URL=pg_url,
        BIAPP_WEBHOOK_TIMEOUT_S="1",
        BIAPP_MAIL_RETRY_WINDOW_S="600",
        BIAPP_SLACK_API_URL=receivers.url("/slack-api/"),
    )


@pytest.fixture
def clock():
    return FixedClock(START)


@pytest.fixture
def ctx(settings, pg_session_factory, clock):
    return build_context(settings, RecordingPublisher(), session_factory=pg_session_factory, clock=clock)


def destination(kind: str, receivers: Receivers, path: str = "/hook") -> dict:
    if kind == "webhook":
        return {"kind": "webhook", "url": receivers.url(path)}
    return {"kind": kind, "webhook_url": receivers.url(path)}


def seed(factory, settings, smtp_port, destinations, recipients=()):
    return seed_rendered(
        factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        recipients=list(recipients),
        files=[("csv", "revenue.csv", "text/csv; charset=utf-8", CSV)],
        destinations=destinations,
    )


def one_pass(ctx, execution_id: str) -> RetryDelivery | None:
    try:
        deliver_execution(ctx, SmtplibTransport(), execution_id)
    except RetryDelivery as retry:
        return retry
    return None


def channel_rows(factory, execution_id):
    _, deliveries = execution_state(factory, execution_id)
    return [d for d in deliveries.values() if d.channel != "email"]


@pytest.mark.parametrize("kind", CHANNELS)
def test_a_200_is_one_accepted_delivery_with_its_answer_recorded(
    kind, ctx, settings, pg_session_factory, smtp, receivers
):
    script = receivers.script("/hook", [202 if kind == "teams" else 200])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination(kind, receivers)])
    sent_before = DELIVERIES.labels("sent", kind)._value.get()

    assert one_pass(ctx, seeded.execution_id) is None
    assert DELIVERIES.labels("sent", kind)._value.get() == sent_before + 1, "metrics carry the channel"
    assert one_pass(ctx, seeded.execution_id) is None  # a duplicate message finds nothing to send

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success", execution.error
    [row] = deliveries.values()
    assert (row.channel, row.status, row.attempts, row.target) == (kind, "sent", 1, "127.0.0.1")
    assert row.answer.startswith("202" if kind == "teams" else "200")
    assert len(script.received) == 1
    body = json.loads(script.received[0]["body"])
    if kind == "slack":
        assert body["text"] and len(body["blocks"]) <= 50
        assert any(b["type"] == "header" for b in body["blocks"])
        assert "&lt;b&gt;APAC&lt;/b&gt;" in json.dumps(body), "cell data must be escaped for mrkdwn"
    elif kind == "teams":
        card = body["attachments"][0]["content"]
        assert body["type"] == "message" and card["type"] == "AdaptiveCard"
    else:
        assert body["type"] == "report.delivered" and body["data"]["run_id"] == seeded.execution_id


@pytest.mark.parametrize("kind", CHANNELS)
def test_429_waits_for_retry_after_then_delivers_once(kind, ctx, clock, settings, pg_session_factory, smtp, receivers):
    script = receivers.script("/hook", [(429, {"Retry-After": "30"}), 200])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination(kind, receivers)])

    retry = one_pass(ctx, seeded.execution_id)
    assert retry is not None and 29_000 <= retry.delay <= 32_000, "the retry honours Retry-After"
    [row] = channel_rows(pg_session_factory, seeded.execution_id)
    assert row.status == "pending" and row.next_attempt_at == START + timedelta(seconds=30)
    assert row.answer.startswith("429")

    clock.advance(seconds=10)  # an early retry (another destination's backoff) does not call the receiver
    assert one_pass(ctx, seeded.execution_id) is not None
    assert len(script.received) == 1

    clock.advance(seconds=25)
    assert one_pass(ctx, seeded.execution_id) is None
    execution, _ = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "success"
    assert len(script.received) == 2


@pytest.mark.parametrize("kind", CHANNELS)
def test_500_then_200_is_retried_with_backoff_and_sent_once(
    kind, ctx, clock, settings, pg_session_factory, smtp, receivers
):
    script = receivers.script("/hook", [500, 200])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination(kind, receivers)])

    retry = one_pass(ctx, seeded.execution_id)
    assert retry is not None and retry.delay is None, "no Retry-After: the broker's backoff decides"
    clock.advance(seconds=5)
    assert one_pass(ctx, seeded.execution_id) is None

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert execution.status == "success" and (row.status, row.attempts) == ("sent", 2)
    assert len(script.received) == 2
    if kind == "webhook":
        ids = {r["headers"]["Webhook-Id"] for r in script.received}
        assert ids == {row.message_id}, "a retry carries the same webhook-id"


@pytest.mark.parametrize("kind", CHANNELS)
def test_400_fails_that_destination_at_once_and_the_run_is_partial(
    kind, ctx, settings, pg_session_factory, smtp, receivers
):
    handler, port = smtp
    script = receivers.script("/hook", [400])
    seeded = seed(pg_session_factory, settings, port, [destination(kind, receivers)], recipients=["ana@example.com"])

    assert one_pass(ctx, seeded.execution_id) is None

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "partial"
    assert deliveries["ana@example.com"].status == "sent" and handler.copies() == {"ana@example.com": 1}
    [row] = [d for d in deliveries.values() if d.channel == kind]
    assert (row.status, row.attempts, row.error) == ("failed", 1, "HTTP 400")
    assert "127.0.0.1" in execution.error and "HTTP 400" in execution.error
    assert len(script.received) == 1


@pytest.mark.parametrize("kind", CHANNELS)
def test_a_stalling_receiver_times_out_and_is_not_retried_past_the_window(
    kind, ctx, clock, settings, pg_session_factory, smtp, receivers
):
    script = receivers.script("/hook", ["stall"], stall_s=3)
    seeded = seed(pg_session_factory, settings, smtp[1], [destination(kind, receivers)])

    passes = 0
    while (retry := one_pass(ctx, seeded.execution_id)) is not None:
        passes += 1
        assert passes < 10, "retried forever"
        clock.advance(seconds=(retry.delay or 240_000) / 1000)

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert execution.status == "failed"
    assert row.status == "failed" and "Timeout" in row.error
    assert 1 <= len(script.received) <= 4


def test_webhook_is_signed_per_standard_webhooks_and_carries_the_documented_payload(
    ctx, settings, pg_session_factory, smtp, receivers
):
    script = receivers.script("/hook", [200])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination("webhook", receivers)])
    [secret] = seeded.signing_secrets.values()
    assert secret.startswith("whsec_")

    one_pass(ctx, seeded.execution_id)

    [request] = script.received
    headers = {k.lower(): v for k, v in request["headers"].items()}
    # An independent implementation verifies the signature (and refuses a tampered body).
    payload = Webhook(secret).verify(request["body"], headers)
    with pytest.raises(Exception):  # noqa: B017 - the library raises its own verification error
        Webhook(secret).verify(request["body"].replace(b"EMEA", b"XXXX"), headers)
    assert headers["webhook-id"].startswith("msg_")
    data = payload["data"]
    assert payload["type"] == "report.delivered"
    assert data["report"] == {"id": str(seeded.report_id), "name": "Weekly revenue"}
    assert data["status"] == "rendered" and data["row_count"] == 3
    assert data["scheduled_for"].startswith("2026-03-02T08:00")
    assert data["sections"][0]["columns"] == ["region", "revenue"]
    assert data["sections"][0]["rows"][0] == ["EMEA", "1200.50"]
    [file] = data["files"]
    assert file["filename"] == "revenue.csv" and "/api/links/" in file["url"] and file["expires_at"]
    assert data["error"] is None


def test_slack_bot_token_posts_through_the_web_api_and_a_revoked_token_fails_at_once(
    ctx, settings, pg_session_factory, smtp, receivers
):
    posted = receivers.script("/slack-api/chat.postMessage", [200], body={"ok": True, "ts": "1.2", "channel": "C1"})
    good = {"kind": "slack", "bot_token": "xoxb-1111-2222-goodtoken", "channel": "C0123ABCD"}
    seeded = seed(pg_session_factory, settings, smtp[1], [good])
    one_pass(ctx, seeded.execution_id)
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert execution.status == "success" and row.target == "channel C0123ABCD"
    request = posted.received[0]
    assert request["headers"]["Authorization"] == "Bearer xoxb-1111-2222-goodtoken"

    receivers.server.clear()
    receivers.script("/slack-api/chat.postMessage", [200], body={"ok": False, "error": "token_revoked"})
    seeded = seed(pg_session_factory, settings, smtp[1], [good])
    assert one_pass(ctx, seeded.execution_id) is None
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert execution.status == "failed" and row.status == "failed" and "token_revoked" in row.error


def test_a_slack_bot_uploads_the_run_s_charts_and_shows_them_in_its_message(
    ctx, settings, pg_session_factory, smtp, receivers
):
    receivers.script(
        "/slack-api/files.getUploadURLExternal",
        [200] * 5,
        body={"ok": True, "upload_url": receivers.url("/slack-upload"), "file_id": "F0CHART1"},
    )
    uploaded = receivers.script("/slack-upload", [200] * 5, body="OK - 1234")
    receivers.script(
        "/slack-api/files.completeUploadExternal", [200] * 5, body={"ok": True, "files": [{"id": "F0CHART1"}]}
    )
    posted = receivers.script("/slack-api/chat.postMessage", [200], body={"ok": True, "ts": "1.2", "channel": "C1"})
    bot = {"kind": "slack", "bot_token": "xoxb-1111-2222-goodtoken", "channel": "C0123ABCD"}
    seeded = seed(pg_session_factory, settings, smtp[1], [bot])
    columns = [ColumnInfo("region", label="Region"), ColumnInfo("revenue", "decimal", label="Revenue")]
    request = charts.ChartRequest("bar", "Revenue by region", columns, [("EMEA", 1200.5), ("APAC", 99)])
    summary = {"sections": [{"title": "Revenue by region", "row_count": 2, "charts": charts.build_specs(request)}]}
    with transaction(pg_session_factory) as session:
        session.get(ReportExecution, uuid.UUID(seeded.execution_id)).summary = summary

    assert one_pass(ctx, seeded.execution_id) is None
    assert uploaded.received[0]["body"].startswith(b"\x89PNG"), "the chart went up as a PNG"
    blocks = json.loads(posted.received[0]["body"])["blocks"]
    [image] = [b for b in blocks if b["type"] == "image"]
    assert image["slack_file"] == {"id": "F0CHART1"} and image["alt_text"]


def test_a_slack_webhook_cannot_upload_so_it_points_to_the_charts(ctx, settings, pg_session_factory, smtp, receivers):
    script = receivers.script("/hook", [200])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination("slack", receivers)])
    columns = [ColumnInfo("region"), ColumnInfo("revenue", "decimal")]
    specs = charts.build_specs(charts.ChartRequest("bar", "By region", columns, [("EMEA", 1), ("APAC", 2)]))
    with transaction(pg_session_factory) as session:
        session.get(ReportExecution, uuid.UUID(seeded.execution_id)).summary = {
            "sections": [{"title": "By region", "row_count": 2, "charts": specs}]
        }
    assert one_pass(ctx, seeded.execution_id) is None
    body = json.loads(script.received[0]["body"])
    assert not [b for b in body["blocks"] if b["type"] == "image"]
    assert "Charts are in the email and the PDF" in json.dumps(body["blocks"])


def test_secrets_never_reach_the_logs_or_the_history(ctx, settings, pg_session_factory, smtp, receivers, caplog):
    receivers.script("/hook/very-secret-path", [500])
    seeded = seed(pg_session_factory, settings, smtp[1], [destination("webhook", receivers, "/hook/very-secret-path")])
    with caplog.at_level(logging.DEBUG):
        one_pass(ctx, seeded.execution_id)
    _, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))  # not the receiver
    texts = [ours, row.error or "", row.answer or "", row.target, row.recipient]
    assert not any("very-secret-path" in t for t in texts)
    assert str(uuid.UUID(row.recipient.split(":", 1)[1]))  # the ledger names the destination by id only


def _back_to_queued(factory, execution_id):
    with transaction(factory) as session:
        session.execute(
            sa.update(ReportExecution)
            .where(ReportExecution.id == uuid.UUID(execution_id))
            .values(status="queued", rendered_at=None, row_count=None)
        )


def test_a_run_that_fails_before_sending_tells_its_webhook_and_chat_destinations_once(
    ctx, settings, pg_session_factory, smtp, receivers
):
    scripts = {kind: receivers.script(f"/{kind}", [202 if kind == "teams" else 200]) for kind in CHANNELS}
    seeded = seed(
        pg_session_factory,
        settings,
        smtp[1],
        [destination(kind, receivers, f"/{kind}") for kind in CHANNELS],
        recipients=["ana@example.com"],
    )
    _back_to_queued(pg_session_factory, seeded.execution_id)

    render_execution(ctx, seeded.execution_id)  # its query has no data source: the run fails for good
    assert (DELIVER_REPORT, (seeded.execution_id,), None) in ctx.publisher.sent
    assert one_pass(ctx, seeded.execution_id) is None
    assert one_pass(ctx, seeded.execution_id) is None  # a duplicate message sends nothing again

    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    assert execution.status == "failed", "the run stays failed"
    assert sorted((d.channel, d.status, d.attempts) for d in deliveries.values()) == [
        ("slack", "sent", 1),
        ("teams", "sent", 1),
        ("webhook", "sent", 1),
    ], "email recipients get no failure mail"
    assert smtp[0].received == []
    assert all(len(script.received) == 1 for script in scripts.values())
    webhook = json.loads(scripts["webhook"].received[0]["body"])
    assert webhook["type"] == "report.failed"
    assert webhook["data"]["status"] == "failed" and webhook["data"]["error"] == execution.error
    slack = json.loads(scripts["slack"].received[0]["body"])
    assert "Error:" in slack["text"] and "nothing was sent" in json.dumps(slack["blocks"])
    teams = json.dumps(json.loads(scripts["teams"].received[0]["body"]))
    assert "Error: " in teams and "Attention" in teams


def test_failure_notices_whose_message_was_lost_are_sent_by_the_sweeper_then_given_up(
    settings, pg_session_factory, smtp, receivers
):
    clock = FixedClock(datetime.now(UTC))  # the ledger's own timestamps are the database's
    ctx = build_context(settings, RecordingPublisher(), session_factory=pg_session_factory, clock=clock)
    receivers.script("/hook", [500] * 20)
    seeded = seed(pg_session_factory, settings, smtp[1], [destination("webhook", receivers)])
    _back_to_queued(pg_session_factory, seeded.execution_id)
    render_execution(ctx, seeded.execution_id)
    ctx.publisher.sent.clear()  # the publish after the failure was lost

    clock.advance(seconds=settings.stuck_queued_after_s * 2 + 5)
    assert seeded.execution_id in {str(i) for i in sweep_stuck_executions(ctx).redelivered}
    assert isinstance(one_pass(ctx, seeded.execution_id), RetryDelivery)  # 500: retried with backoff

    clock.advance(seconds=settings.mail_retry_window_s + 60)
    sweep_stuck_executions(ctx)
    execution, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert (execution.status, row.status) == ("failed", "failed"), "nothing is retried forever"
    assert one_pass(ctx, seeded.execution_id) is None
