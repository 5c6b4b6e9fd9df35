"""While the application database is unreachable the API answers 503 with Retry-After, never 500."""

from __future__ import annotations

import pytest
from flask_jwt_extended import create_access_token

from services.api.app import create_app
from shared.messaging import RecordingPublisher
from tests.support import free_port, make_settings


@pytest.fixture
def app_without_database():
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/biapp?connect_timeout=2"
    app = create_app(make_settings(BIAPP_DATABASE_URL=url), publisher=RecordingPublisher())
    app.testing = True
    return app


def test_login_answers_503_with_retry_after(app_without_database):
    response = app_without_database.test_client().post(
        "/api/auth/login", json={"email": "ana@example.com", "password": "correct horse battery"}
    )
    assert response.status_code == 503
    # The login limiter folds its own window into the header; either way it asks to come back soon.
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.get_json()["code"] == "database_unavailable"


@pytest.mark.parametrize("path", ["/api/scheduled-reports", "/api/saved-queries", "/api/auth/me", "/api/alerts"])
def test_data_routes_answer_503(app_without_database, path):
    with app_without_database.app_context():
        token = create_access_token(identity="6f1d3c2e-7a55-4f0e-9e53-3c1b0f6f2a10", additional_claims={"pwv": 0})
    response = app_without_database.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_liveness_stays_up_and_readiness_says_why(app_without_database):
    client = app_without_database.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
