"""Auth and access rules, through the real Flask app (SQLite, recording publisher)."""

import jwt as pyjwt
import pytest

from tests.conftest import build_harness
from tests.support import SECRET_KEY

PASSWORD = "correct horse battery"


def test_login_returns_a_bearer_token_that_identifies_the_user(api):
    api.create_user("ana@example.com", "analyst")
    response = api.client().post("/api/auth/login", json={"email": "ANA@example.com", "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    me = api.client().get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "ana@example.com"
    assert "password" not in me.get_data(as_text=True).lower().replace('"password_changed_at"', "")


@pytest.mark.parametrize("email", ["ana@example.com", "nobody@example.com"])
def test_wrong_password_or_unknown_user_is_401_with_the_same_message(api, email):
    api.create_user("ana@example.com")
    response = api.client().post("/api/auth/login", json={"email": email, "password": "wrong password!"})
    assert response.status_code == 401
    assert response.get_json() == {"code": "unauthorized", "message": "Wrong email or password."}


def test_missing_token_is_401(api):
    response = api.client().get("/api/auth/me")
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"


def test_forged_token_is_401(api):
    api.create_user("ana@example.com")
    forged = pyjwt.encode({"sub": "x", "jti": "j", "type": "access"}, "another-secret-key" * 3, algorithm="HS256")
    response = api.client().get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_expired_token_is_401(api):
    client = api.create_user("ana@example.com")
    claims = pyjwt.decode(client.token, SECRET_KEY, algorithms=["HS256"])
    claims["exp"] = claims["iat"] - 10
    expired = pyjwt.encode(claims, SECRET_KEY, algorithm="HS256")
    response = api.client().get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.get_json()["message"]


def test_logout_makes_the_token_unusable(api):
    client = api.create_user("ana@example.com")
    assert client.get("/api/auth/me").status_code == 200
    assert client.post("/api/auth/logout").status_code == 204
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert "revoked" in response.get_json()["message"]


def test_password_change_ends_older_sessions_and_returns_a_working_token(api):
    old = api.create_user("ana@example.com")  # no wait: the token's password version, not its second, decides
    wrong = old.post("/api/auth/password", json={"current_password": "nope", "new_password": "another long one"})
    assert wrong.status_code == 422
    assert "current_password" in wrong.get_json()["errors"]
    response = old.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "another long one"})
    assert response.status_code == 200
    fresh = response.get_json()["access_token"]
    assert old.get("/api/auth/me").status_code == 401
    assert api.client().get("/api/auth/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    relogin = api.client().post("/api/auth/login", json={"email": "ana@example.com", "password": "another long one"})
    assert relogin.status_code == 200


def test_viewer_on_an_admin_route_is_403(api):
    viewer = api.create_user("vic@example.com", "viewer")
    response = viewer.get("/api/users")
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"


def test_admin_manages_users(api):
    admin = api.create_user("root@example.com", "admin")
    created = admin.post("/api/users", json={"email": "new@example.com", "password": PASSWORD, "role": "analyst"})
    assert created.status_code == 201
    user_id = created.get_json()["id"]
    assert "password" not in created.get_json()
    duplicate = admin.post("/api/users", json={"email": "NEW@example.com", "password": PASSWORD})
    assert duplicate.status_code == 409
    listing = admin.get("/api/users?limit=1&offset=0")
    assert listing.status_code == 200
    assert listing.get_json()["total"] == 2 and len(listing.get_json()["items"]) == 1
    assert '"total": 2' in listing.headers["X-Pagination"]
    patched = admin.patch(f"/api/users/{user_id}", json={"role": "viewer", "is_active": False})
    assert patched.get_json()["role"] == "viewer"
    login = api.client().post("/api/auth/login", json={"email": "new@example.com", "password": PASSWORD})
    assert login.status_code == 401  # deactivated
    assert admin.delete(f"/api/users/{user_id}").status_code == 204
    assert admin.get(f"/api/users/{user_id}").status_code == 404


def test_deactivating_a_user_invalidates_their_token(api):
    admin = api.create_user("root@example.com", "admin")
    ana = api.create_user("ana@example.com", "analyst")
    ana_id = ana.get("/api/auth/me").get_json()["id"]
    admin.patch(f"/api/users/{ana_id}", json={"is_active": False})
    assert ana.get("/api/auth/me").status_code == 401


def test_short_password_is_422_naming_the_field(api):
    admin = api.create_user("root@example.com", "admin")
    response = admin.post("/api/users", json={"email": "x@example.com", "password": "short"})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


def test_signup_is_closed_unless_allowed(api, sqlite_url, tmp_path):
    closed = api.client().post("/api/auth/register", json={"email": "s@example.com", "password": PASSWORD})
    assert closed.status_code == 404
    open_api = build_harness(sqlite_url, tmp_path, BIAPP_ALLOW_SIGNUP="true")
    opened = open_api.client().post("/api/auth/register", json={"email": "s@example.com", "password": PASSWORD})
    assert opened.status_code == 201
    assert opened.get_json()["role"] == "viewer"


def test_repeated_failed_logins_are_rate_limited(sqlite_url, tmp_path):
    harness = build_harness(sqlite_url, tmp_path, BIAPP_LOGIN_RATE_LIMIT="3 per minute")
    harness.create_user("ana@example.com")
    client = harness.client()
    codes = [
        client.post("/api/auth/login", json={"email": "ana@example.com", "password": "wrong password"}).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    blocked = client.post("/api/auth/login", json={"email": "ana@example.com", "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.get_json()["code"] == "too_many_requests"
