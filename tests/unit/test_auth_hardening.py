"""Auth hardening: who a failed-login limit can lock out, when old tokens stop, nested JSON bodies."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest

from shared import users
from shared.clock import FixedClock
from shared.db import transaction
from tests.conftest import build_harness
from tests.support import SECRET_KEY

PASSWORD = "correct horse battery"
WRONG = "not the password"


# --- failed-login limits: per address and per (address, email), never per email alone ----------


@pytest.fixture
def limited(sqlite_url, tmp_path):
    harness = build_harness(
        sqlite_url, tmp_path, BIAPP_LOGIN_RATE_LIMIT="10 per minute", BIAPP_LOGIN_ADDRESS_RATE_LIMIT="20 per minute"
    )
    harness.create_user("alice@example.com")
    harness.create_user("bob@example.com")
    return harness


def _login(harness, address: str, email: str, password: str):
    return harness.app.test_client().post(
        "/api/auth/login",
        json={"email": email, "password": password},
        environ_overrides={"REMOTE_ADDR": address},
    )


def test_failures_from_many_addresses_do_not_lock_the_owner_out(limited):
    codes = [_login(limited, f"198.51.100.{n}", "alice@example.com", WRONG).status_code for n in range(1, 11)]
    assert codes == [401] * 10
    # One more from yet another address is still just a wrong password: nothing counts per email alone.
    assert _login(limited, "198.51.100.11", "alice@example.com", WRONG).status_code == 401
    assert _login(limited, "203.0.113.7", "alice@example.com", PASSWORD).status_code == 200


def test_the_eleventh_failure_from_one_address_is_429(limited):
    codes = [_login(limited, "198.51.100.1", "alice@example.com", WRONG).status_code for _ in range(11)]
    assert codes == [401] * 10 + [429]
    blocked = _login(limited, "198.51.100.1", "alice@example.com", PASSWORD)
    assert blocked.status_code == 429
    assert blocked.get_json()["code"] == "too_many_requests"
    # The owner, from her own address, is not affected.
    assert _login(limited, "203.0.113.7", "alice@example.com", PASSWORD).status_code == 200


def test_one_address_is_limited_across_all_emails(limited):
    # Spraying: one wrong guess for each of twenty accounts (most do not even exist) from one address.
    codes = [_login(limited, "198.51.100.1", f"user{n}@example.com", WRONG).status_code for n in range(20)]
    assert codes == [401] * 20
    assert _login(limited, "198.51.100.1", "bob@example.com", PASSWORD).status_code == 429
    assert _login(limited, "203.0.113.8", "bob@example.com", PASSWORD).status_code == 200


def test_the_pair_limit_counts_one_address_and_one_email_together(limited):
    # The email is normalised, so its case does not open a fresh counter.
    for variant in ["alice@example.com", "ALICE@example.com", "Alice@Example.com"] * 3 + ["alice@EXAMPLE.com"]:
        assert _login(limited, "198.51.100.1", variant, WRONG).status_code == 401
    assert _login(limited, "198.51.100.1", "alice@example.com", PASSWORD).status_code == 429
    assert _login(limited, "203.0.113.7", "alice@example.com", PASSWORD).status_code == 200

    app = limited.app
    from services.api.auth.views import _address_key, _pair_key

    def keys(address: str, body) -> tuple[str, str]:
        with app.test_request_context(
            "/api/auth/login", method="POST", json=body, environ_base={"REMOTE_ADDR": address}
        ):
            return _address_key(), _pair_key()

    a1 = keys("198.51.100.1", {"email": "alice@example.com"})
    assert keys("198.51.100.1", {"email": " ALICE@example.com"}) == a1
    assert keys("198.51.100.1", {"email": "bob@example.com"})[1] != a1[1]
    assert keys("198.51.100.1", {"email": "bob@example.com"})[0] == a1[0]
    assert keys("198.51.100.2", {"email": "alice@example.com"})[1] != a1[1]
    assert "198.51.100.1" in a1[1]
    # Bodies that are not an object still get a key (and a 422 from validation, not a 500).
    assert keys("198.51.100.1", [None, None])[1] != a1[1]


def test_forwarded_for_headers_are_not_trusted(limited):
    client = limited.app.test_client()
    for n in range(10):
        response = client.post(
            "/api/auth/login",
            json={"email": "alice@example.com", "password": WRONG},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
            environ_overrides={"REMOTE_ADDR": "198.51.100.1"},
        )
        assert response.status_code == 401
    assert _login(limited, "198.51.100.1", "alice@example.com", PASSWORD).status_code == 429


# --- a password version in every token ------------------------------------------------------------


def _claims(token: str) -> dict:
    return pyjwt.decode(token, SECRET_KEY, algorithms=["HS256"])


def _me(api, token: str):
    return api.client().get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_every_token_carries_the_password_version(api):
    client = api.create_user("ana@example.com")
    assert _claims(client.token)["pwv"] == 0
    changed = client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "a new long one"})
    assert _claims(changed.get_json()["access_token"])["pwv"] == 1


def test_a_token_from_the_same_second_as_the_password_change_is_refused(api):
    old = api.create_user("ana@example.com")
    # Freeze the API clock inside the second the old token was issued in, after its issue:
    # a seconds-resolution comparison cannot tell these apart, a password version can.
    issued = datetime.fromtimestamp(_claims(old.token)["iat"], UTC)
    runtime = api.app.extensions["biapp"]
    api.app.extensions["biapp"] = dataclasses.replace(runtime, clock=FixedClock(issued + timedelta(milliseconds=500)))

    response = old.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "a new long one"})
    assert response.status_code == 200
    fresh = response.get_json()["access_token"]
    refused = old.get("/api/auth/me")
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "unauthorized"
    assert _me(api, fresh).status_code == 200


def test_an_admin_password_reset_ends_the_users_sessions_at_once(api):
    admin = api.create_user("root@example.com", "admin")
    ana = api.create_user("ana@example.com")
    ana_id = ana.get("/api/auth/me").get_json()["id"]
    patched = admin.patch(f"/api/users/{ana_id}", json={"password": "reset by the admin"})
    assert patched.status_code == 200
    assert ana.get("/api/auth/me").status_code == 401
    again = api.client().login("ana@example.com", "reset by the admin")
    assert _claims(again.token)["pwv"] == 1
    assert again.get("/api/auth/me").status_code == 200
    # An admin PATCH without a password leaves sessions alone.
    assert admin.patch(f"/api/users/{ana_id}", json={"name": "Ana"}).status_code == 200
    assert again.get("/api/auth/me").status_code == 200


@pytest.mark.parametrize("pwv", [None, 7, "0"])
def test_tokens_without_the_current_password_version_are_refused(api, pwv):
    client = api.create_user("ana@example.com")
    claims = _claims(client.token)
    if pwv is None:
        del claims["pwv"]
    else:
        claims["pwv"] = pwv
    token = pyjwt.encode(claims, SECRET_KEY, algorithm="HS256")
    assert _me(api, token).status_code == 401
    assert _me(api, client.token).status_code == 200


def test_change_password_bumps_the_version(api):
    with transaction(api.session_factory) as session:
        user = users.create_user(session, email="ana@example.com", password=PASSWORD)
        assert user.password_version == 0
        users.change_password(session, user, current=PASSWORD, new="a new long one", now=datetime.now(UTC))
        session.flush()
        session.refresh(user)
        assert user.password_version == 1
        users.set_password(session, user, "another long one", now=datetime.now(UTC))
        session.flush()
        session.refresh(user)
        assert user.password_version == 2


def test_a_deactivated_users_token_is_refused(api):
    admin = api.create_user("root@example.com", "admin")
    ana = api.create_user("ana@example.com")
    ana_id = ana.get("/api/auth/me").get_json()["id"]
    assert admin.patch(f"/api/users/{ana_id}", json={"is_active": False}).status_code == 200
    assert ana.get("/api/auth/me").status_code == 401


# --- nested JSON: a 4xx, never a 500 --------------------------------------------------------------

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


def _nest(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def _raw_post(api, path: str, body: str, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return api.app.test_client().post(path, data=body, headers=headers)


def _assert_error_shape(response, statuses=(400, 422)):
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body["code"], str) and isinstance(body["message"], str)
    assert set(body) <= {"code", "message", "errors"}


PATHS = ["/api/auth/login", "/api/scheduled-reports", "/api/saved-queries", "/api/data-sources", "/api/dashboards"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["arrays", "objects"])
def test_deeply_nested_bodies_are_a_4xx(api, path, body):
    admin = api.create_user("root@example.com", "admin")
    _assert_error_shape(_raw_post(api, path, body, admin.token))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/login", {"email": "a@example.com", "password": _nest(65)}),
        ("/api/scheduled-reports", {"name": "x", "schedule": _nest(65)}),
        ("/api/saved-queries", {"name": "x", "filters": [{"field": "a", "op": "eq", "value": _nest(70)}]}),
        ("/api/data-sources", {"name": "x", "kind": "sqlite", "path": "x.db", "options": _nest(300)}),
    ],
)
def test_bodies_nested_beyond_the_limit_are_400(api, path, body):
    admin = api.create_user("root@example.com", "admin")
    response = _raw_post(api, path, json.dumps(body), admin.token)
    _assert_error_shape(response, (400,))
    assert "nested" in response.get_json()["message"]


def test_wide_but_shallow_bodies_and_brackets_in_strings_pass_the_depth_check(api):
    admin = api.create_user("root@example.com", "admin")
    wide = {"email": "a@example.com", "password": "x", "extra": [[1] for _ in range(500)]}
    response = _raw_post(api, "/api/auth/login", json.dumps(wide), admin.token)
    assert response.status_code == 422  # the unknown field, not the depth
    in_strings = {"email": "root@example.com", "password": "[" * 200 + "{" * 200}
    assert _raw_post(api, "/api/auth/login", json.dumps(in_strings)).status_code == 401
    within = {"email": "root@example.com", "password": PASSWORD, "x": _nest(60)}
    assert _raw_post(api, "/api/auth/login", json.dumps(within)).status_code == 422


@pytest.mark.parametrize("body", ["[null, null]", "[]", "null", "1", '"text"', "{"])
def test_login_bodies_that_are_not_an_object_are_4xx(api, body):
    response = _raw_post(api, "/api/auth/login", body)
    expected = (400,) if body == "{" else (422,)
    _assert_error_shape(response, expected)
