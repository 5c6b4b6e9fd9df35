"""API conventions every resource shares: errors, pagination, limits, OpenAPI, operations endpoints."""

import sqlite3

import pytest

PASSWORD = "correct horse battery"


@pytest.fixture
def report_of(api):
    """Creates a report owned by the given client (over a tiny SQLite data source)."""
    admin = api.create_user("root@example.com", "admin")
    db_path = api.settings.sqlite_root + "/tiny.db"
    with sqlite3.connect(db_path) as conn:
        conn.execute("create table t (x integer)")
    source = admin.post("/api/data-sources", json={"name": "Tiny", "kind": "sqlite", "path": "tiny.db"}).get_json()

    def make(client):
        query = client.post(
            "/api/saved-queries", json={"name": "All", "data_source_id": source["id"], "sql": "select x from t"}
        )
        assert query.status_code == 201, query.get_json()
        report = client.post(
            "/api/scheduled-reports",
            json={
                "name": "Daily x",
                "saved_query_id": query.get_json()["id"],
                "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
                "recipients": ["a@example.com"],
                "formats": ["csv"],
            },
        )
        assert report.status_code == 201, report.get_json()
        return report.get_json()

    return make


def test_another_users_report_is_404_and_admin_sees_it(api, report_of):
    ana = api.create_user("ana@example.com", "analyst")
    bob = api.create_user("bob@example.com", "analyst")
    report = report_of(ana)
    valid = {k: report[k] for k in ("name", "saved_query_id", "schedule", "recipients", "formats")}
    for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/run"), ("GET", "/executions")):
        body = valid if method == "PUT" else None
        response = bob.request(method, f"/api/scheduled-reports/{report['id']}{suffix}", json=body)
        assert response.status_code == 404, (method, suffix, response.get_json())
    assert bob.get("/api/scheduled-reports").get_json()["total"] == 0
    admin = api.client().login("root@example.com", PASSWORD)
    assert admin.get(f"/api/scheduled-reports/{report['id']}").status_code == 200


def test_run_now_answers_202_with_a_queued_execution_and_publishes_its_id(api, report_of):
    ana = api.create_user("ana@example.com", "analyst")
    report = report_of(ana)
    response = ana.post(f"/api/scheduled-reports/{report['id']}/run")
    assert response.status_code == 202
    execution_id = response.get_json()["execution_id"]
    assert api.publisher.sent == [("render_report", (execution_id,), None)]
    execution = ana.get(f"/api/executions/{execution_id}").get_json()
    assert execution["status"] == "queued" and execution["trigger"] == "manual"
    assert ana.get(f"/api/scheduled-reports/{report['id']}").get_json()["next_run_at"] == report["next_run_at"]


def test_validation_errors_are_422_listing_each_field(api):
    ana = api.create_user("ana@example.com", "analyst")
    response = ana.post(
        "/api/scheduled-reports",
        json={"name": "", "schedule": {"frequency": "hourly"}, "recipients": ["not-an-email"], "formats": ["docx"]},
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert {"name", "schedule", "recipients", "formats"} <= set(body["errors"])


def test_malformed_json_is_a_clear_400_or_422(api):
    ana = api.create_user("ana@example.com", "analyst")
    response = ana.client.post(
        "/api/scheduled-reports",
        data="{not json",
        headers={"Authorization": f"Bearer {ana.token}", "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert "message" in response.get_json()


def test_oversized_request_is_413(api):
    ana = api.create_user("ana@example.com", "analyst")
    huge = {"name": "x" * (api.settings.max_request_bytes + 10)}
    response = ana.post("/api/scheduled-reports", json=huge)
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_unknown_route_is_json_404(api):
    response = api.client().get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_pagination_limits_are_validated(api):
    admin = api.create_user("root@example.com", "admin")
    assert admin.get("/api/users?limit=0").status_code == 422
    assert admin.get("/api/users?limit=501").status_code == 422
    assert admin.get("/api/users?offset=-1").status_code == 422


def test_openapi_document_lists_the_contract_paths_and_bearer_auth(api):
    response = api.client().get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    for path in (
        "/api/auth/login",
        "/api/users",
        "/api/scheduled-reports/{report_id}/run",
        "/api/executions/{execution_id}",
        "/api/executions/{execution_id}/artifacts/{artifact_id}",
    ):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert api.client().get("/api/docs").status_code == 200


def test_health_readiness_and_metrics(api):
    client = api.client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "broker": "ok"}
    client.get("/healthz")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'biapp_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


def test_readiness_fails_when_the_database_is_gone(api, tmp_path):
    from tests.conftest import build_harness

    broken = build_harness(f"sqlite:///{tmp_path}/missing/dir/x.db", tmp_path)
    response = broken.client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("unavailable")


def test_deleting_a_query_a_report_still_uses_is_409_and_changes_nothing(api, report_of):
    ana = api.create_user("ana@example.com", "analyst")
    report = report_of(ana)
    response = ana.delete(f"/api/saved-queries/{report['saved_query_id']}")
    assert response.status_code == 409
    assert response.get_json()["code"] == "conflict"
    assert ana.get(f"/api/saved-queries/{report['saved_query_id']}").status_code == 200
    assert ana.get(f"/api/scheduled-reports/{report['id']}").status_code == 200
