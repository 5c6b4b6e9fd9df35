"""One shared test for every artifact store, on PostgreSQL, plus downloads over HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.api.app import create_app
from shared import users
from shared.db import transaction
from shared.messaging import RecordingPublisher
from shared.models import (
    Artifact,
    ArtifactChunk,
    DataSource,
    ReportExecution,
    SavedQuery,
    ScheduledReport,
)
from shared.storage import CHUNK_BYTES, build_store
from tests.support import ApiClient, make_settings

PASSWORD = "correct horse battery"
PAYLOAD = os.urandom(CHUNK_BYTES * 2 + 12345)  # several chunks, last one partial


@pytest.fixture(params=["database", "filesystem"])
def store_spec(request, tmp_path):
    return "database" if request.param == "database" else f"filesystem:{tmp_path / 'files'}"


def seed_execution(session) -> tuple[ReportExecution, users.User]:
    owner = users.create_user(session, email="owner@example.com", password=PASSWORD, role="analyst")
    users.create_user(session, email="other@example.com", password=PASSWORD, role="analyst")
    users.create_user(session, email="boss@example.com", password=PASSWORD, role="admin")
    source = DataSource(name="db", kind="sqlite", path="x.db", options={}, owner_id=owner.id)
    session.add(source)
    session.flush()
    query = SavedQuery(name="q", kind="sql", data_source_id=source.id, sql="select 1", owner_id=owner.id)
    session.add(query)
    session.flush()
    report = ScheduledReport(
        owner_id=owner.id,
        name="Private report",
        saved_query_id=query.id,
        schedule={"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        formats=["csv"],
    )
    session.add(report)
    session.flush()
    now = datetime.now(UTC)
    execution = ReportExecution(report_id=report.id, trigger="manual", status="rendered", scheduled_for=now)
    session.add(execution)
    session.flush()
    return execution, owner


def new_artifact(execution: ReportExecution, *, expires_in=timedelta(days=1)) -> Artifact:
    return Artifact(
        id=uuid.uuid4(),
        execution_id=execution.id,
        format="csv",
        filename="quarterly-sales_2026-11-28_0900.csv",
        content_type="text/csv; charset=utf-8",
        size=len(PAYLOAD),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        storage="",
        expires_at=datetime.now(UTC) + expires_in,
    )


def test_store_round_trip_delete_and_rollback(store_spec, pg_session_factory, tmp_path):
    store = build_store(store_spec)
    with transaction(pg_session_factory) as session:
        execution, _ = seed_execution(session)
        artifact = new_artifact(execution)
        session.add(artifact)
        store.save(session, artifact, io.BytesIO(PAYLOAD))
    with pg_session_factory() as session:
        loaded = session.get(Artifact, artifact.id)
        assert loaded.storage == store.name
        chunks = list(store.open(session, loaded))
        assert len(chunks) >= 3 and all(len(c) <= CHUNK_BYTES for c in chunks)
        assert b"".join(chunks) == PAYLOAD

    with transaction(pg_session_factory) as session:
        loaded = session.get(Artifact, artifact.id)
        store.delete(session, loaded)
    with pg_session_factory() as session:
        assert b"".join(store.open(session, session.get(Artifact, artifact.id))) == b""

    # A save whose transaction rolls back leaves nothing behind once discarded.
    failed = new_artifact(execution)
    with pytest.raises(RuntimeError):
        with transaction(pg_session_factory) as session:
            session.add(failed)
            store.save(session, failed, io.BytesIO(PAYLOAD))
            raise RuntimeError("writer failed after the save")
    store.discard(failed)
    with pg_session_factory() as session:
        assert session.get(Artifact, failed.id) is None
        assert session.scalar(sa.select(sa.func.count()).select_from(ArtifactChunk)) == 0
    files = [p for p in (tmp_path / "files").rglob("*") if p.is_file()] if (tmp_path / "files").exists() else []
    assert files == []


def test_files_stay_readable_after_the_store_setting_changes(pg_session_factory, tmp_path):
    old_fs, db = build_store(f"filesystem:{tmp_path / 'old'}"), build_store("database")
    with transaction(pg_session_factory) as session:
        execution, _ = seed_execution(session)
        on_disk, in_db = new_artifact(execution), new_artifact(execution)
        session.add_all([on_disk, in_db])
        old_fs.save(session, on_disk, io.BytesIO(PAYLOAD))
        db.save(session, in_db, io.BytesIO(PAYLOAD))
    moved_on = build_store(f"filesystem:{tmp_path / 'new'}")
    with pg_session_factory() as session:
        for store in (db, moved_on):
            for artifact in (on_disk, in_db):
                assert b"".join(store.open(session, session.get(Artifact, artifact.id))) == PAYLOAD


def test_download_over_http(store_spec, pg_url, pg_session_factory, tmp_path):
    settings = make_settings(BIAPP_DATABASE_URL=pg_url, BIAPP_ARTIFACT_STORE=store_spec)
    store = build_store(store_spec)
    with transaction(pg_session_factory) as session:
        execution, _ = seed_execution(session)
        live, purged, expired = new_artifact(execution), new_artifact(execution), new_artifact(execution)
        expired.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        session.add_all([live, purged, expired])
        for artifact in (live, purged, expired):
            store.save(session, artifact, io.BytesIO(PAYLOAD))
        store.delete(session, purged)
        purged.purged_at = datetime.now(UTC)
    app = create_app(settings, publisher=RecordingPublisher(), session_factory=pg_session_factory)
    app.testing = True

    def client(email):
        return ApiClient(app.test_client()).login(email, PASSWORD)

    owner, other, admin = client("owner@example.com"), client("other@example.com"), client("boss@example.com")
    url = f"/api/executions/{execution.id}/artifacts/{live.id}"
    for allowed in (owner, admin):
        response = allowed.get(url)
        assert response.status_code == 200
        assert hashlib.sha256(response.data).hexdigest() == live.sha256 == response.headers["X-Content-SHA256"]
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Length"] == str(len(PAYLOAD))
        assert response.headers["Content-Disposition"].startswith(
            'attachment; filename="quarterly-sales_2026-11-28_0900.csv"'
        )
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    hidden = other.get(url)
    assert hidden.status_code == 404 and hidden.get_json()["code"] == "not_found"
    assert ApiClient(app.test_client()).get(url).status_code == 401
    assert owner.get(f"/api/executions/{execution.id}/artifacts/{uuid.uuid4()}").status_code == 404
    for gone in (purged, expired):
        response = owner.get(f"/api/executions/{execution.id}/artifacts/{gone.id}")
        assert response.status_code == 410 and response.get_json()["code"] == "gone"
