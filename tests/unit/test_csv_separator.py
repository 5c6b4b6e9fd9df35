"""A report's CSV separator and byte order mark: checked by the API, honoured by the renderer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.renderer.render import render_execution
from shared.db import transaction
from shared.models import ReportExecution, SavedQuery, ScheduledReport, User
from tests.unit.test_render_execution import make_report, state, world  # noqa: F401 (world is a fixture)


@pytest.fixture
def analyst(api):
    return api.create_user("ana@example.com", "analyst")


@pytest.fixture
def report_body(api, analyst):
    with transaction(api.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        query_id = str(query.id)
    return {
        "name": "Daily revenue",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        "recipients": ["a@example.com"],
        "formats": ["csv"],
    }


def test_a_comma_by_default_and_each_supported_separator_kept(analyst, report_body):
    created = analyst.post("/api/scheduled-reports", json=report_body).get_json()
    assert created["csv_separator"] == "," and created["csv_bom"] is False
    for separator in (";", "\t", "|", ","):
        changed = analyst.put(
            f"/api/scheduled-reports/{created['id']}", json={**report_body, "csv_separator": separator}
        )
        assert changed.status_code == 200, changed.get_json()
        assert changed.get_json()["csv_separator"] == separator


def test_any_other_separator_is_a_422_naming_the_field(analyst, report_body):
    for separator in (":", ";;", "", " ", None, 0):
        response = analyst.post("/api/scheduled-reports", json={**report_body, "csv_separator": separator})
        assert response.status_code == 422, separator
        assert list(response.get_json()["errors"]) == ["csv_separator"], separator


def test_a_semicolon_file_with_a_bom_opens_in_excel_as_utf8(world):  # noqa: F811 (the fixture)
    ctx, _ = world
    execution_id = make_report(ctx, dashboard=False, formats=("csv",), sql="select region, revenue from sales")
    with transaction(ctx.session_factory) as session:
        report_id = session.get(ReportExecution, execution_id).report_id
        session.execute(
            sa.update(ScheduledReport).where(ScheduledReport.id == report_id).values(csv_separator=";", csv_bom=True)
        )
    render_execution(ctx, str(execution_id))
    _, files = state(ctx, execution_id)
    data = files["csv"][1]
    assert data.startswith(b"\xef\xbb\xbfregion;revenue\r\nEMEA;1200.5\r\n")
