"""Scheduled reports over HTTP: validation, next runs, pause/resume, run now, history, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared.clock import FixedClock
from shared.db import transaction
from shared.models import Artifact, Delivery, ReportExecution, SavedQuery, ScheduledReport, User
from tests.conftest import build_harness

NOW = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)  # the Friday before Berlin springs forward


@pytest.fixture
def harness(sqlite_url, tmp_path):
    store = tmp_path / "files"
    store.mkdir()
    api = build_harness(sqlite_url, tmp_path, BIAPP_ARTIFACT_STORE=f"filesystem:{store}")
    api.clock = FixedClock(NOW)
    api.app.extensions["biapp"].clock = api.clock
    api.store_dir = store
    return api


@pytest.fixture
def analyst(harness):
    return harness.create_user("ana@example.com", "analyst")


@pytest.fixture
def query_id(harness, analyst):
    with transaction(harness.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        return str(query.id)


def body(query_id, **overrides):
    data = {
        "name": "Daily revenue",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "02:30", "timezone": "Europe/Berlin"},
        "recipients": ["a@example.com", "A@example.com", "b@example.com"],
        "cc": [],
        "formats": ["csv"],
        "subject": "Revenue {{date}}",
        "send_if_empty": True,
        "is_active": True,
    }
    data.update(overrides)
    return data


def create(client, query_id, **overrides) -> dict:
    response = client.post("/api/scheduled-reports", json=body(query_id, **overrides))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_created_report_carries_its_next_run_and_deduplicated_recipients(analyst, query_id):
    report = create(analyst, query_id)
    assert report["next_run_at"].startswith("2024-03-30T01:30:00")
    assert report["recipients"] == ["a@example.com", "b@example.com"]
    assert report["last_execution"] is None


def test_next_runs_preview_in_utc_and_local_time_across_spring_forward(analyst, query_id):
    report = create(analyst, query_id)
    response = analyst.get(f"/api/scheduled-reports/{report['id']}/next-runs?count=3")
    assert response.status_code == 200
    runs = response.get_json()
    assert [r["at_local"] for r in runs] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist that day
        "2024-04-01T02:30:00+02:00",
    ]
    assert runs[1]["at_utc"].startswith("2024-03-31T01:00:00")


@pytest.mark.parametrize("count", ["0", "367", "many"])
def test_next_runs_count_is_bounded(analyst, query_id, count):
    report = create(analyst, query_id)
    response = analyst.get(f"/api/scheduled-reports/{report['id']}/next-runs?count={count}")
    assert response.status_code == 422
    assert "count" in response.get_json()["errors"]


def test_a_full_year_of_next_runs_can_be_previewed(analyst, query_id):
    report = create(analyst, query_id)
    runs = analyst.get(f"/api/scheduled-reports/{report['id']}/next-runs?count=366").get_json()
    assert len(runs) == 366
    assert len({r["at_utc"] for r in runs}) == 366


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"schedule": {"frequency": "cron", "cron": "not a cron", "timezone": "UTC"}}, ("schedule", "cron")),
        (
            {"schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Atlantis"}},
            ("schedule", "timezone"),
        ),
        ({"schedule": {"frequency": "monthly", "time": "09:00", "day_of_month": 0}}, ("schedule", "day_of_month")),
        ({"schedule": {"frequency": "daily", "time": "25:00"}}, ("schedule", "time")),
        ({"schedule": {"frequency": "weekly", "time": "09:00", "days_of_week": []}}, ("schedule", "days_of_week")),
        ({"schedule": {"frequency": "fortnightly"}}, ("schedule", "frequency")),
        ({"recipients": []}, ("recipients",)),
        ({"recipients": ["not-an-address"]}, ("recipients",)),
        ({"recipients": [f"r{i}@example.com" for i in range(101)]}, ("recipients",)),
        ({"cc": ["also bad"]}, ("cc",)),
        ({"formats": []}, ("formats",)),
        ({"formats": ["docx"]}, ("formats",)),
        ({"name": ""}, ("name",)),
        ({"subject": "two\nlines"}, ("subject",)),
        ({"locale": "xx-NOWHERE"}, ("locale",)),
        ({"locale": "de_DE; drop"}, ("locale",)),
    ],
)
def test_invalid_reports_are_refused_naming_the_field(analyst, query_id, overrides, path):
    response = analyst.post("/api/scheduled-reports", json=body(query_id, **overrides))
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    for key in path:
        assert key in errors, errors
        errors = errors[key]


def test_a_report_keeps_its_locale_normalised_and_defaults_to_en_us(analyst, query_id):
    assert create(analyst, query_id)["locale"] == "en-US"
    german = create(analyst, query_id, locale="de_de")
    assert german["locale"] == "de-DE"
    assert analyst.get(f"/api/scheduled-reports/{german['id']}").get_json()["locale"] == "de-DE"


def test_unknown_saved_query_is_refused(analyst, query_id):
    response = analyst.post("/api/scheduled-reports", json=body(str(uuid.uuid4())))
    assert response.status_code == 422
    assert "saved_query_id" in response.get_json()["errors"]


def test_pausing_stops_a_report_and_resuming_recomputes_from_now(harness, analyst, query_id):
    report = create(analyst, query_id)
    url = f"/api/scheduled-reports/{report['id']}"
    paused = analyst.put(url, json=body(query_id, is_active=False)).get_json()
    assert paused["next_run_at"] is None
    harness.clock.set(datetime(2024, 4, 10, 12, tzinfo=UTC))
    resumed = analyst.put(url, json=body(query_id, is_active=True)).get_json()
    assert resumed["next_run_at"].startswith("2024-04-11T00:30:00")


def test_editing_the_schedule_recomputes_next_run(analyst, query_id):
    report = create(analyst, query_id)
    schedule = {"frequency": "weekly", "time": "09:00", "days_of_week": [0], "timezone": "America/New_York"}
    edited = analyst.put(f"/api/scheduled-reports/{report['id']}", json=body(query_id, schedule=schedule)).get_json()
    assert edited["next_run_at"].startswith("2024-04-01T13:00:00")


def test_run_now_and_test_work_on_paused_reports_and_never_move_next_run(harness, analyst, query_id):
    report = create(analyst, query_id, is_active=False)
    url = f"/api/scheduled-reports/{report['id']}"
    run = analyst.post(f"{url}/run")
    test = analyst.post(f"{url}/test")
    assert run.status_code == test.status_code == 202
    assert analyst.get(url).get_json()["next_run_at"] is None
    sent = [args[0] for name, args, _ in harness.publisher.sent if name == "render_report"]
    assert sent == [run.get_json()["execution_id"], test.get_json()["execution_id"]]
    with transaction(harness.session_factory) as session:
        test_run = session.get(ReportExecution, uuid.UUID(test.get_json()["execution_id"]))
        assert test_run.trigger == "test"
        assert test_run.recipients == [
            {
                "address": "ana@example.com",
                "kind": "to",
                "channel": "email",
                "destination_id": None,
                "target": "ana@example.com",
            }
        ]


def _execution(session, report_id, *, status, trigger, at):
    execution = ReportExecution(
        report_id=report_id, trigger=trigger, status=status, scheduled_for=at, queued_at=at, last_enqueued_at=at
    )
    session.add(execution)
    session.flush()
    return execution


def test_history_is_newest_first_and_filters_by_status_trigger_and_dates(harness, analyst, query_id):
    report = create(analyst, query_id)
    rid = uuid.UUID(report["id"])
    with transaction(harness.session_factory) as session:
        for day, status, trigger in [
            (1, "success", "schedule"),
            (2, "failed", "schedule"),
            (3, "success", "manual"),
            (4, "success", "test"),
            (5, "partial", "schedule"),
        ]:
            _execution(session, rid, status=status, trigger=trigger, at=datetime(2024, 3, day, 8, tzinfo=UTC))
    url = f"/api/scheduled-reports/{report['id']}/executions"

    def days(query=""):
        response = analyst.get(f"{url}{query}")
        assert response.status_code == 200, response.get_json()
        return [int(item["queued_at"][8:10]) for item in response.get_json()["items"]]

    assert days() == [5, 4, 3, 2, 1]
    assert days("?status=success") == [4, 3, 1]
    assert days("?status=success,partial&trigger=schedule") == [5, 1]
    assert days("?from=2024-03-02&to=2024-03-04") == [4, 3, 2]
    assert days("?from=2024-03-03T00:00:00Z&limit=1") == [5]
    assert analyst.get(f"{url}?status=lost").status_code == 422
    assert "to" in analyst.get(f"{url}?from=2024-03-05&to=2024-03-01").get_json()["errors"]
    assert "from" in analyst.get(f"{url}?from=yesterday").get_json()["errors"]


def test_report_carries_its_last_execution(harness, analyst, query_id):
    report = create(analyst, query_id)
    with transaction(harness.session_factory) as session:
        _execution(session, uuid.UUID(report["id"]), status="failed", trigger="schedule", at=NOW - timedelta(hours=1))
    last = analyst.get(f"/api/scheduled-reports/{report['id']}").get_json()["last_execution"]
    assert last["status"] == "failed"


def test_deleting_a_report_removes_its_history_and_files(harness, analyst, query_id):
    report = create(analyst, query_id)
    rid = uuid.UUID(report["id"])
    with transaction(harness.session_factory) as session:
        execution = _execution(session, rid, status="success", trigger="schedule", at=NOW)
        session.add(Delivery(execution_id=execution.id, recipient="a@example.com", status="sent"))
        artifact_id = uuid.uuid4()
        artifact = Artifact(
            id=artifact_id,
            execution_id=execution.id,
            format="csv",
            filename="r.csv",
            content_type="text/csv",
            size=3,
            sha256="0" * 64,
            storage="filesystem",
            location=str(harness.store_dir / str(execution.id) / str(artifact_id)),
            expires_at=NOW + timedelta(days=30),
        )
        session.add(artifact)
    stored = harness.store_dir / str(execution.id) / str(artifact_id)
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"a,b")

    assert analyst.delete(f"/api/scheduled-reports/{rid}").status_code == 204

    assert analyst.get(f"/api/scheduled-reports/{rid}").status_code == 404
    assert not stored.exists()
    with transaction(harness.session_factory) as session:
        assert session.get(ScheduledReport, rid) is None
        assert session.execute(sa.select(sa.func.count()).select_from(ReportExecution)).scalar_one() == 0
        assert session.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == 0
        assert session.execute(sa.select(sa.func.count()).select_from(Artifact)).scalar_one() == 0


def test_another_users_report_is_not_found(harness, analyst, query_id):
    report = create(analyst, query_id)
    other = harness.create_user("other@example.com", "analyst")
    assert other.get(f"/api/scheduled-reports/{report['id']}").status_code == 404
    assert other.get(f"/api/scheduled-reports/{report['id']}/next-runs").status_code == 404
    assert other.get(f"/api/scheduled-reports/{report['id']}/executions").status_code == 404
    assert other.delete(f"/api/scheduled-reports/{report['id']}").status_code == 404


@pytest.mark.parametrize(
    ("field", "template", "fragment"),
    [
        ("subject", "Revenue {{ dat }}", "'dat' is undefined"),
        ("subject", "{{ ''.__class__.__mro__ }}", "unsafe"),
        ("body", "{% for %}", "invalid"),
    ],
)
def test_a_template_that_would_fail_at_send_time_is_refused_when_saved(analyst, query_id, field, template, fragment):
    response = analyst.post("/api/scheduled-reports", json=body(query_id, **{field: template}))
    assert response.status_code == 422
    message = response.get_json()["errors"][field][0]
    assert fragment in message and "report_name" in message


def test_date_and_the_other_documented_variables_are_accepted(analyst, query_id):
    subject = "{{ report_name }} {{date}} {{ run_time }} {{ row_count }} {{ timezone }}"
    assert analyst.post("/api/scheduled-reports", json=body(query_id, subject=subject)).status_code == 201


def test_pausing_a_report_skips_its_scheduled_runs_not_yet_started(harness, analyst, query_id):
    report = analyst.post("/api/scheduled-reports", json=body(query_id)).get_json()
    manual = analyst.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    with transaction(harness.session_factory) as session:
        scheduled = ReportExecution(
            report_id=uuid.UUID(report["id"]),
            trigger="schedule",
            status="queued",
            scheduled_for=NOW,
            queued_at=NOW,
            recipients=[],
        )
        session.add(scheduled)
        session.flush()
        scheduled_id = scheduled.id

    paused = analyst.put(f"/api/scheduled-reports/{report['id']}", json=body(query_id, is_active=False))

    assert paused.status_code == 200 and paused.get_json()["next_run_at"] is None
    with harness.session_factory() as session:
        cancelled = session.get(ReportExecution, scheduled_id)
        kept = session.get(ReportExecution, uuid.UUID(manual))
    assert cancelled.status == "skipped" and "paused" in cancelled.error
    assert kept.status == "queued", "a run someone asked for by hand is kept"


def _listed(client, report_id) -> dict:
    response = client.get("/api/scheduled-reports?limit=50")
    assert response.status_code == 200
    return next(item for item in response.get_json()["items"] if item["id"] == report_id)


def test_the_reports_list_never_shows_a_stale_report_whatever_changed_it(harness, analyst, query_id):
    """The list reuses a report's dump while the report is unchanged; any change, even by SQL, shows at once."""
    report = create(analyst, query_id, destinations=[{"kind": "webhook", "url": "https://hooks.example.com/a"}])
    report_id = report["id"]
    assert _listed(analyst, report_id) == analyst.get(f"/api/scheduled-reports/{report_id}").get_json()
    assert _listed(analyst, report_id) == _listed(analyst, report_id)  # served again from the same state

    changes = [
        ("update scheduled_reports set is_active = false where id = :id", lambda item: item["is_active"] is False),
        (
            "update scheduled_reports set name = 'Renamed by hand' where id = :id",
            lambda i: i["name"] == "Renamed by hand",
        ),
        (
            "update scheduled_reports set schedule = :schedule where id = :id",
            lambda item: item["schedule"]["time"] == "07:15",
        ),
        (
            "update destinations set address = 'https://hooks.example.com/b', target = 'hooks2.example.com'"
            " where report_id = :id and kind = 'webhook'",
            lambda item: "hooks2.example.com" in [d["target"] for d in item["destinations"]],
        ),
    ]
    schedule = '{"frequency": "daily", "time": "07:15", "timezone": "Europe/Berlin"}'
    with harness.session_factory() as session:
        db_id = session.get(ScheduledReport, uuid.UUID(report_id)).id
    for statement, shows in changes:
        with transaction(harness.session_factory) as session:
            session.execute(sa.text(statement), {"id": db_id.hex, "schedule": schedule})
        item = _listed(analyst, report_id)
        assert shows(item), (statement, item)
        assert item == analyst.get(f"/api/scheduled-reports/{report_id}").get_json()

    assert analyst.post(f"/api/scheduled-reports/{report_id}/run").status_code == 202
    item = _listed(analyst, report_id)
    assert item["last_execution"] is not None and item["last_execution"]["trigger"] == "manual"
