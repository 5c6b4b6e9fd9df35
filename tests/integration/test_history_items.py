"""Every item of a history list is exactly the run's own page (`GET /api/executions/{id}`), whatever the run.

The lists build their items without the ORM and without marshmallow (services/api/executions/listing.py);
the detail goes through ExecutionSchema. Runs of every shape are compared: each state, deliveries on every
channel (with and without a target, an answer or only an SMTP reply), a purged file beside a live one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import users
from shared.db import transaction
from shared.models import Artifact, Delivery, ReportExecution, SavedQuery, ScheduledReport
from tests.conftest import build_harness

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def harness(pg_url, tmp_path):
    api = build_harness(pg_url, tmp_path)
    yield api
    api.session_factory.kw["bind"].dispose()


def seed(factory) -> uuid.UUID:
    with transaction(factory) as session:
        owner = users.create_user(session, email="ana@example.com", password=PASSWORD, role="analyst")
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=owner.id)
        session.add(query)
        session.flush()
        report = ScheduledReport(
            owner_id=owner.id,
            name="Revenue",
            saved_query_id=query.id,
            schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
            formats=["xlsx", "csv"],
        )
        session.add(report)
        session.flush()
        shapes = [
            dict(status="queued"),
            dict(status="running", started_at=T0),
            dict(status="failed", started_at=T0, finished_at=T0 + timedelta(seconds=3), error="The query failed."),
            dict(
                status="partial",
                started_at=T0,
                rendered_at=T0 + timedelta(seconds=2),
                sending_at=T0 + timedelta(seconds=2),
                finished_at=T0 + timedelta(seconds=9, microseconds=5),
                row_count=1200,
                truncated=True,
                attempts=2,
                late=True,
            ),
            # whole seconds (no fraction in ISO 8601), and 1.001 s: 1000 ms as Python computes it (1000.999...)
            dict(
                status="success",
                started_at=T0.replace(microsecond=0),
                finished_at=T0.replace(microsecond=0) + timedelta(seconds=1, microseconds=1000),
                row_count=0,
            ),
        ]
        for n, shape in enumerate(shapes):
            at = T0 + timedelta(minutes=n)
            execution = ReportExecution(
                report_id=report.id,
                trigger=("schedule", "manual", "test")[n % 3],
                scheduled_for=at,
                queued_at=at,
                **shape,
            )
            session.add(execution)
            session.flush()
            if shape["status"] in ("partial", "success"):
                session.add_all(
                    [
                        Delivery(
                            execution_id=execution.id,
                            recipient="b@example.com",
                            kind="cc",
                            status="sent",
                            smtp_reply="250 OK",
                            sent_at=at,
                            message_id="<m@x>",
                        ),
                        Delivery(
                            execution_id=execution.id,
                            recipient="a@example.com",
                            status="failed",
                            attempts=3,
                            error="550 no such user",
                            answer="550 no such user",
                        ),
                        Delivery(
                            execution_id=execution.id,
                            recipient="hooks.example.com",
                            channel="webhook",
                            target="hooks.example.com",
                            destination_id=uuid.uuid4(),
                            status="pending",
                            next_attempt_at=at + timedelta(minutes=5),
                        ),
                        Delivery(
                            execution_id=execution.id,
                            recipient="slack",
                            channel="slack",
                            target=None,
                            status="sent",
                            answer="ok",
                        ),
                    ]
                )
                for fmt, purged in (("xlsx", None), ("csv", at)):
                    session.add(
                        Artifact(
                            execution_id=execution.id,
                            format=fmt,
                            filename=f"revenue.{fmt}",
                            content_type="text/csv" if fmt == "csv" else "application/octet-stream",
                            size=10,
                            sha256="0" * 64,
                            storage="database",
                            created_at=at + timedelta(seconds=len(fmt)),
                            expires_at=at + timedelta(days=30),
                            purged_at=purged,
                        )
                    )
        return report.id


@pytest.mark.parametrize("who", ["ana@example.com", "admin"])
def test_history_items_are_the_runs_own_pages(harness, who):
    report_id = seed(harness.session_factory)
    if who == "admin":
        with transaction(harness.session_factory) as session:
            users.ensure_admin(session, email="root@example.com", password=PASSWORD)
        client = harness.client().login("root@example.com", PASSWORD)
    else:
        client = harness.client().login(who, PASSWORD)
    for url in (
        f"/api/scheduled-reports/{report_id}/executions?limit=3",
        f"/api/executions?limit=3&report_id={report_id}",
    ):
        items, cursor = [], None
        while True:
            page = client.get(url + (f"&cursor={cursor}" if cursor else ""))
            assert page.status_code == 200, page.get_json()
            assert page.headers["Content-Type"] == "application/json"
            body = page.get_json()
            items += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(items) == 5
        assert [item["status"] for item in items] == ["success", "partial", "failed", "running", "queued"]
        for item in items:
            detail = client.get(f"/api/executions/{item['id']}").get_json()
            assert item == detail
    partial = next(item for item in items if item["status"] == "partial")
    assert [d["target"] for d in partial["deliveries"]] == [
        "a@example.com",
        "b@example.com",
        "hooks.example.com",
        "slack",
    ]
    assert [a["format"] for a in partial["artifacts"]] == ["xlsx"]  # the purged CSV is gone from the list
    assert partial["duration_ms"] == 9000
