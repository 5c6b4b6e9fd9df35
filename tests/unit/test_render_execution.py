"""render_execution end to end on SQLite (app database and data source) with a recording publisher."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from datetime import UTC, datetime

import openpyxl
import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from services.renderer.render import render_execution
from services.renderer.writers.pdf_writer import PdfWriter
from shared import users
from shared.context import build_context
from shared.db import make_engine, make_session_factory, transaction
from shared.messaging import RecordingPublisher
from shared.models import (
    Artifact,
    Dashboard,
    DashboardWidget,
    DataSource,
    ReportExecution,
    SavedQuery,
    ScheduledReport,
)
from tests.support import make_settings


@pytest.fixture
def world(sqlite_url, tmp_path):
    root = tmp_path / "sqlite"
    root.mkdir()
    with sqlite3.connect(root / "sales.db") as conn:
        conn.execute("create table sales (region text, revenue real)")
        conn.executemany("insert into sales values (?, ?)", [("EMEA", 1200.5), ("APAC", 990.0), ("=1+1", 1.0)])
    settings = make_settings(
        BIAPP_DATABASE_URL=sqlite_url,
        BIAPP_SQLITE_ROOT=str(root),
        BIAPP_ARTIFACT_STORE=f"filesystem:{tmp_path / 'files'}",
    )
    factory = make_session_factory(make_engine(sqlite_url))
    ctx = build_context(settings, RecordingPublisher(), session_factory=factory)
    return ctx, tmp_path / "files"


def make_report(ctx, *, dashboard: bool, formats=("xlsx", "csv", "pdf"), sql=None, send_if_empty=True):
    with transaction(ctx.session_factory) as session:
        owner = users.create_user(session, email="ana@example.com", password="correct horse battery", role="analyst")
        source = DataSource(name="Sales", kind="sqlite", path="sales.db", options={}, owner_id=owner.id)
        session.add(source)
        session.flush()

        def query(name, text):
            saved = SavedQuery(name=name, kind="sql", data_source_id=source.id, sql=text, owner_id=owner.id)
            session.add(saved)
            session.flush()
            return saved

        fields = {}
        if dashboard:
            board = Dashboard(name="Board", owner_id=owner.id)
            session.add(board)
            session.flush()
            by_region = query("by region", "select region, revenue from sales order by revenue desc")
            count = query("count", "select count(*) as n from sales")
            session.add_all(
                [
                    DashboardWidget(dashboard_id=board.id, position=2, title="Count", saved_query_id=count.id),
                    DashboardWidget(
                        dashboard_id=board.id, position=1, title="Revenue", saved_query_id=by_region.id, chart="bar"
                    ),
                ]
            )
            fields["dashboard_id"] = board.id
        else:
            fields["saved_query_id"] = query("q", sql or "select region, revenue from sales").id
        report = ScheduledReport(
            owner_id=owner.id,
            name="Quarterly Sales",
            schedule={"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
            timezone="Europe/Berlin",
            formats=list(formats),
            send_if_empty=send_if_empty,
            **fields,
        )
        session.add(report)
        session.flush()
        execution = ReportExecution(
            report_id=report.id,
            trigger="manual",
            status="queued",
            scheduled_for=datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
        )
        session.add(execution)
        session.flush()
        return execution.id


def state(ctx, execution_id):
    with ctx.session_factory() as session:
        execution = session.get(ReportExecution, execution_id)
        artifacts = session.scalars(sa.select(Artifact).where(Artifact.execution_id == execution_id)).all()
        files = {a.format: (a, b"".join(ctx.store.open(session, a))) for a in artifacts}
        return execution, files


def stored_files(root):
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_dashboard_renders_every_format_with_widgets_in_order(world):
    ctx, _ = world
    execution_id = make_report(ctx, dashboard=True)
    render_execution(ctx, str(execution_id))

    execution, files = state(ctx, execution_id)
    assert execution.status == "rendered" and execution.row_count == 4
    assert ctx.publisher.sent == [("deliver_report", (str(execution_id),), None)]
    assert {a.filename for a, _ in files.values()} == {
        "quarterly-sales_2026-11-28_0900.xlsx",
        "quarterly-sales_2026-11-28_0900.csv.zip",
        "quarterly-sales_2026-11-28_0900.pdf",
    }
    book = openpyxl.load_workbook(io.BytesIO(files["xlsx"][1]))
    assert book.sheetnames == ["Summary", "Revenue", "Count", "Revenue chart data"]  # the bar chart reads the last
    assert book["Revenue"]["A4"].value == "=1+1" and book["Revenue"]["A4"].data_type == "s"
    with zipfile.ZipFile(io.BytesIO(files["csv"][1])) as archive:
        assert archive.namelist() == ["01-revenue.csv", "02-count.csv"]
    pdf_text = "".join(PdfReader(io.BytesIO(files["pdf"][1])).pages[0].extract_text().split()).replace("\x00", "")
    assert pdf_text.index("Revenue") < pdf_text.index("Count")


def test_one_failing_format_fails_the_run_with_no_files_and_no_mail(world, monkeypatch):
    ctx, root = world
    execution_id = make_report(ctx, dashboard=False)

    def broken(self, meta, base_name):
        raise MemoryError("layout exploded")

    monkeypatch.setattr(PdfWriter, "finish", broken)
    render_execution(ctx, str(execution_id))

    execution, files = state(ctx, execution_id)
    assert execution.status == "failed"
    assert execution.error == "Writing the PDF file failed (MemoryError)."
    assert files == {} and stored_files(root) == []
    assert ctx.publisher.sent == []


def test_a_store_failure_midway_removes_the_files_already_written(world, monkeypatch):
    ctx, root = world
    execution_id = make_report(ctx, dashboard=False)
    save = ctx.store.save
    calls = []

    def flaky(session, artifact, source):
        calls.append(artifact.format)
        if len(calls) == 2:
            raise OSError("disk full")
        save(session, artifact, source)

    monkeypatch.setattr(ctx.store, "save", flaky)
    render_execution(ctx, str(execution_id))

    execution, files = state(ctx, execution_id)
    assert execution.status == "failed" and "OSError" in execution.error
    assert "disk full" not in execution.error  # no internals in the API
    assert files == {} and stored_files(root) == []
    assert ctx.publisher.sent == []


def test_no_rows_and_send_if_empty_off_is_skipped_without_files(world):
    ctx, root = world
    execution_id = make_report(ctx, dashboard=False, sql="select * from sales where 1 = 0", send_if_empty=False)
    render_execution(ctx, str(execution_id))
    execution, files = state(ctx, execution_id)
    assert execution.status == "skipped" and execution.row_count == 0
    assert files == {} and stored_files(root) == [] and ctx.publisher.sent == []


def test_a_redelivered_message_renders_nothing_twice(world):
    ctx, _ = world
    execution_id = make_report(ctx, dashboard=False, formats=("csv",))
    render_execution(ctx, str(execution_id))
    render_execution(ctx, str(execution_id))
    execution, files = state(ctx, execution_id)
    assert execution.attempts == 1 and list(files) == ["csv"]
    assert len(ctx.publisher.sent) == 1
