import uuid
from datetime import UTC, datetime

import pytest

from shared import executions
from shared.db import make_engine, make_session_factory, transaction
from shared.errors import IllegalTransitionError
from shared.models import ReportExecution, SavedQuery, ScheduledReport, User

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

LEGAL = [
    ("queued", "running"),
    ("running", "rendered"),
    ("rendered", "sending"),
    ("sending", "success"),
    ("sending", "partial"),
    ("running", "skipped"),
    ("queued", "failed"),
    ("running", "failed"),
    ("rendered", "failed"),
    ("running", "queued"),
]
ILLEGAL = [
    ("queued", "success"),
    ("queued", "rendered"),
    ("running", "sending"),
    ("rendered", "success"),
    ("success", "failed"),
    ("failed", "queued"),
    ("partial", "success"),
    ("skipped", "running"),
    ("success", "running"),
]


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_legal_moves_are_allowed(source, target):
    executions.check_transition(source, target)


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_illegal_moves_are_refused(source, target):
    with pytest.raises(IllegalTransitionError):
        executions.check_transition(source, target)


@pytest.fixture
def factory(sqlite_url):
    return make_session_factory(make_engine(sqlite_url))


@pytest.fixture
def execution_id(factory):
    with transaction(factory) as session:
        user = User(email="o@example.com", password_hash="x", role="analyst")
        session.add(user)
        session.flush()
        query = SavedQuery(name="q", kind="sql", sql="select 1", owner_id=user.id, definition={})
        session.add(query)
        session.flush()
        report = ScheduledReport(
            owner_id=user.id,
            name="r",
            saved_query_id=query.id,
            schedule={"frequency": "daily"},
            recipients=["a@example.com"],
            formats=["csv"],
        )
        session.add(report)
        session.flush()
        execution = ReportExecution(report_id=report.id, trigger="manual", scheduled_for=NOW, queued_at=NOW)
        session.add(execution)
        session.flush()
        return execution.id


def test_guarded_move_stamps_time_and_counts_attempt(factory, execution_id):
    with transaction(factory) as session:
        assert executions.move(session, execution_id, expected="queued", target="running", now=NOW)
    with factory() as session:
        execution = session.get(ReportExecution, execution_id)
        assert execution.status == "running"
        assert execution.started_at == NOW
        assert execution.attempts == 1


def test_duplicate_move_finds_nothing_to_do(factory, execution_id):
    with transaction(factory) as session:
        assert executions.move(session, execution_id, expected="queued", target="running", now=NOW)
    with transaction(factory) as session:
        assert not executions.move(session, execution_id, expected="queued", target="running", now=NOW)
    with factory() as session:
        assert session.get(ReportExecution, execution_id).attempts == 1


def test_fail_works_from_any_active_state_but_not_after_the_end(factory, execution_id):
    with transaction(factory) as session:
        assert executions.fail(session, execution_id, now=NOW, error="boom")
    with transaction(factory) as session:
        assert not executions.fail(session, execution_id, now=NOW, error="again")
    with factory() as session:
        execution = session.get(ReportExecution, execution_id)
        assert (execution.status, execution.error, execution.finished_at) == ("failed", "boom", NOW)


def test_unknown_execution_moves_nowhere(factory):
    with transaction(factory) as session:
        assert not executions.move(session, uuid.uuid4(), expected="queued", target="running", now=NOW)
