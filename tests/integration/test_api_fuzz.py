"""Bad input is a 4xx, never a 500: regressions from an OpenAPI fuzzer, then the fuzzer itself.

Everything runs against PostgreSQL: its text and JSONB cannot hold NUL, which SQLite stores happily,
so only PostgreSQL shows the 500 a NUL used to cause.

The second half runs Schemathesis over the published OpenAPI (every operation, as an admin) and then
its stateful mode (chains of calls over the links it infers: create a data source, then test it, list
its tables, ...). `BIAPP_FUZZ_SEED` picks the seed (default fixed, so CI is reproducible; run it with
others to look further), `BIAPP_FUZZ_EXAMPLES` the examples per operation (fuzzing phase) and
`BIAPP_FUZZ_SCENARIOS` the number of stateful scenarios.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from flask_jwt_extended import create_access_token
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.api.pagination import MAX_LIMIT, MAX_OFFSET
from shared.db import make_engine, make_session_factory
from shared.messaging import RecordingPublisher
from shared.models import User
from tests.conftest import build_harness, truncate_all
from tests.support import free_port, make_settings

BEYOND_64_BITS = 17329056754530103296  # what the fuzzer sent: > 2**63 - 1, PostgreSQL's largest bigint

# --- regressions -------------------------------------------------------------------------------------


@pytest.fixture
def harness(pg_url, tmp_path):
    return build_harness(pg_url, tmp_path)


@pytest.fixture
def admin(harness):
    return harness.create_user("admin@example.com", role="admin")


def raw_json(client, method: str, path: str, text: str):
    """Send `text` as the JSON body verbatim: the only way to send escapes such as a lone \\ud800."""
    return client.request(method, path, data=text.encode(), headers={"Content-Type": "application/json"})


def assert_validation_error(response, field: str | None = None):
    """A 422 in the documented shape; with `field`, naming that field (dotted for nested values)."""
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "validation_error" and body["message"]
    if field is not None:
        assert field in body["errors"], body["errors"]
    return body


@pytest.fixture
def sqlite_source(harness, admin):
    """A SQLite source with one table `t` (id, name): something reports and queries can point at."""
    with sqlite3.connect(f"{harness.settings.sqlite_root}/tiny.db") as conn:
        conn.execute("create table t (id integer, name text)")
        conn.execute("insert into t values (1, 'a')")
    created = admin.post("/api/data-sources", json={"name": "Tiny", "kind": "sqlite", "path": "tiny.db"})
    assert created.status_code == 201, created.get_json()
    return created.get_json()


@pytest.fixture
def saved_query(admin, sqlite_source):
    created = admin.post(
        "/api/saved-queries", json={"name": "All", "data_source_id": sqlite_source["id"], "sql": "select * from t"}
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()


@pytest.fixture
def report_body(saved_query):
    return {
        "name": "Daily",
        "saved_query_id": saved_query["id"],
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        "recipients": ["a@example.com"],
        "formats": ["csv"],
    }


@pytest.fixture
def alert_body(saved_query):
    return {
        "name": "Rows",
        "saved_query_id": saved_query["id"],
        "condition": {"kind": "row_count", "op": "gt", "value": 0},
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "UTC"},
        "recipients": ["a@example.com"],
    }


@pytest.mark.parametrize("body", ["[null, null]", "null", "[]", '"x"', "0", '{"email": ["a"], "password": "x"}'])
def test_login_with_a_body_that_is_not_an_object_of_strings_is_a_422(harness, body):
    assert_validation_error(raw_json(harness.client(), "POST", "/api/auth/login", body))


@pytest.mark.parametrize("field", ["email", "password"])
@pytest.mark.parametrize("bad", [r"\ud800", r"\u0000"])  # JSON escapes, sent verbatim
def test_login_with_nul_or_a_lone_surrogate_is_a_422(harness, field, bad):
    # The rate limiter hashes the email before validation runs: a lone surrogate cannot be encoded to hash.
    body = {"email": "a@example.com", "password": "correct horse battery"}
    text = json.dumps(body).replace(body[field], f"x{bad}@example.com", 1)
    assert_validation_error(raw_json(harness.client(), "POST", "/api/auth/login", text), field)


LIST_PATHS = (
    "/api/users",
    "/api/data-sources",
    "/api/semantic-entities",
    "/api/saved-queries",
    "/api/dashboards",
    "/api/scheduled-reports",
    "/api/alerts",
)


@pytest.mark.parametrize("path", LIST_PATHS)
def test_an_offset_or_limit_beyond_64_bits_is_a_422_on_every_list(admin, path):
    assert_validation_error(admin.get(f"{path}?offset={BEYOND_64_BITS}"), "offset")
    assert_validation_error(admin.get(f"{path}?offset={MAX_OFFSET + 1}"), "offset")
    assert_validation_error(admin.get(f"{path}?limit={BEYOND_64_BITS}"), "limit")
    assert_validation_error(admin.get(f"{path}?offset=-1"), "offset")
    at_the_bound = admin.get(f"{path}?offset={MAX_OFFSET}&limit={MAX_LIMIT}")
    assert at_the_bound.status_code == 200, at_the_bound.get_json()
    assert at_the_bound.get_json()["items"] == [] and at_the_bound.get_json()["offset"] == MAX_OFFSET


def test_an_offset_beyond_64_bits_is_a_422_on_nested_lists(admin, report_body, alert_body):
    report = admin.post("/api/scheduled-reports", json=report_body).get_json()
    alert = admin.post("/api/alerts", json=alert_body).get_json()
    for path in (f"/api/scheduled-reports/{report['id']}/executions", f"/api/alerts/{alert['id']}/events"):
        assert_validation_error(admin.get(f"{path}?offset={BEYOND_64_BITS}"), "offset")
        assert admin.get(f"{path}?offset={MAX_OFFSET}").status_code == 200


@pytest.mark.parametrize("field", ["cc", "recipients"])
@pytest.mark.parametrize("resource", ["scheduled-reports", "alerts"])
def test_address_lists_mixing_strings_and_numbers_are_a_422_naming_the_item(
    admin, report_body, alert_body, resource, field
):
    body = report_body if resource == "scheduled-reports" else alert_body
    mixed = {**body, field: ["", 0, "a@example.com", 0, ""]}
    created = admin.post(f"/api/{resource}", json=mixed)
    errors = assert_validation_error(created, field)["errors"][field]
    # Each item is checked on its own: the numbers and the empty strings, by index.
    assert sorted(errors) == ["0", "1", "3", "4"], errors
    assert errors["1"] == ["Not a valid string."]
    existing = admin.post(f"/api/{resource}", json=body).get_json()
    assert_validation_error(admin.put(f"/api/{resource}/{existing['id']}", json=mixed), field)


def test_address_lists_still_normalise_and_deduplicate(admin, report_body):
    body = {**report_body, "recipients": ["A@Example.com", "a@example.com", "b@example.com"], "cc": ["C@example.COM"]}
    created = admin.post("/api/scheduled-reports", json=body)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["recipients"] == ["A@example.com", "b@example.com"]
    assert created.get_json()["cc"] == ["C@example.com"]


# Each: a resource path, a valid body, and where to put the bad text (a dotted path into the body).
def _bodies(saved_query, report_body, alert_body) -> list[tuple[str, dict, str]]:
    return [
        ("/api/users", {"email": "new@example.com", "password": "long enough password", "name": "x"}, "name"),
        (
            "/api/saved-queries",
            {"name": "q", "data_source_id": saved_query["data_source_id"], "sql": "select 1"},
            "name",
        ),
        (
            "/api/saved-queries",
            {"name": "q", "data_source_id": saved_query["data_source_id"], "sql": "select 1 where 'x' = 'x'"},
            "sql",
        ),
        (
            "/api/dashboards",
            {"name": "d", "widgets": [{"title": "w", "saved_query_id": saved_query["id"]}]},
            "widgets.0.title",
        ),
        ("/api/scheduled-reports", report_body, "name"),
        ("/api/scheduled-reports", {**report_body, "subject": "s"}, "subject"),
        ("/api/scheduled-reports", report_body, "schedule.timezone"),
        ("/api/alerts", alert_body, "name"),
        (
            "/api/alerts",
            {
                **alert_body,
                "condition": {"kind": "value", "column": "c", "aggregate": "first", "op": "eq", "value": "v"},
            },
            "condition.value",
        ),
        ("/api/data-sources", {"name": "s", "kind": "sqlite", "path": "tiny.db"}, "name"),
        ("/api/data-sources", {"name": "s", "kind": "sqlite", "path": "tiny.db"}, "path"),
    ]


def _with_text(body: dict, dotted: str, text: str) -> dict:
    body = json.loads(json.dumps(body))
    *parents, last = dotted.split(".")
    target = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = text
    return body


@pytest.mark.parametrize("bad", ["nul\x00byte", "\x00", "lone \ud800 surrogate", "\udcff"])
def test_nul_and_lone_surrogates_in_text_are_a_422_naming_the_field(admin, saved_query, report_body, alert_body, bad):
    for path, body, where in _bodies(saved_query, report_body, alert_body):
        # json.dumps writes a surrogate as the escape "\ud800", as a fuzzer would: valid JSON, invalid text.
        response = raw_json(admin, "POST", path, json.dumps(_with_text(body, where, bad)))
        assert_validation_error(response, where)


def test_nul_and_lone_surrogates_in_keys_and_free_form_values_are_a_422(admin, saved_query):
    source_id = saved_query["data_source_id"]
    base = {"name": "q", "data_source_id": source_id, "sql": "select 1"}
    response = raw_json(admin, "PUT", f"/api/saved-queries/{saved_query['id']}", json.dumps({**base, "n\x00": 1}))
    assert_validation_error(response, "n\ufffd")  # the name is quoted back without the NUL
    options = {"name": "p", "kind": "postgresql", "host": "127.0.0.1", "database": "x", "options": {"\ud800": "x"}}
    assert_validation_error(raw_json(admin, "POST", "/api/data-sources", json.dumps(options)), "options.\ufffd")
    semantic = {"name": "q", "entity_id": str(uuid.uuid4()), "filters": [{"field": "f", "op": "eq", "value": "\x00"}]}
    assert_validation_error(raw_json(admin, "POST", "/api/saved-queries", json.dumps(semantic)), "filters.0.value")


def test_nan_and_infinity_in_a_body_are_a_422(admin, sqlite_source):
    entity = admin.post(
        "/api/semantic-entities",
        json={
            "name": "T",
            "data_source_id": sqlite_source["id"],
            "table": "t",
            "dimensions": [{"name": "name", "column": "name", "type": "string"}],
            "measures": [{"name": "ids", "column": "id", "aggregation": "sum"}],
        },
    )
    assert entity.status_code == 201, entity.get_json()
    semantic = {"name": "q", "entity_id": entity.get_json()["id"], "dimensions": ["name"], "measures": ["ids"]}
    postgres = {"name": "p", "kind": "postgresql", "host": "127.0.0.1", "port": free_port(), "database": "x"}
    for path, body, where in (
        # Both used to reach PostgreSQL's JSON columns, which refuse NaN: a 500.
        (
            "/api/saved-queries",
            {**semantic, "filters": [{"field": "name", "op": "eq", "value": float("nan")}]},
            "filters.0.value",
        ),
        ("/api/data-sources", {**postgres, "options": {"application_name": float("inf")}}, "options.application_name"),
    ):
        text = json.dumps(body)
        assert "NaN" in text or "Infinity" in text  # Python writes them and reads them back: JSON has no such number
        assert_validation_error(raw_json(admin, "POST", path, text), where)


def test_nul_in_a_path_or_a_declared_query_parameter_is_a_4xx(admin, sqlite_source, saved_query):
    columns = admin.get(f"/api/data-sources/{sqlite_source['id']}/tables/t%00x/columns")
    assert_validation_error(columns, "table")
    assert admin.get(f"/api/data-sources/{sqlite_source['id']}/tables/t/columns").status_code == 200
    assert_validation_error(admin.get("/api/email-config?scope=user%00"), "scope")
    assert_validation_error(admin.post(f"/api/saved-queries/{saved_query['id']}/preview?timezone=UTC%00"), "timezone")
    assert admin.get("/api/links/abc%00def").status_code == 404


def test_history_bounds_without_a_utc_instant_are_a_422(admin, report_body):
    report = admin.post("/api/scheduled-reports", json=report_body).get_json()
    path = f"/api/scheduled-reports/{report['id']}/executions"
    # The day after 9999-12-31, and instants that fall outside years 1..9999 once in UTC.
    for query in ("to=9999-12-31", "from=0001-01-01T00:00:00%2B14:00", "from=9999-12-31T23:59:59-23:59"):
        assert_validation_error(admin.get(f"{path}?{query}"), query.split("=")[0])
    assert admin.get(f"{path}?from=0001-01-01&to=9999-12-30").status_code == 200


def test_a_preview_time_zone_too_long_for_a_file_name_is_a_422(admin, saved_query):
    path = f"/api/saved-queries/{saved_query['id']}/preview"
    assert_validation_error(admin.post(f"{path}?timezone={'a' * 300}"), "timezone")
    unknown = admin.post(f"{path}?timezone=Nowhere/Special")
    assert unknown.status_code == 422 and unknown.get_json()["code"] == "query_rejected"


def test_unknown_query_parameters_are_ignored_whatever_their_bytes(admin):
    for query in ("%ff%fe=%00", "x%00y=1", "%ed%a0%80=%ed%a0%80", "a=%c0%af&b=%f4%90%80%80&offset=0"):
        response = admin.get(f"/api/users?{query}")
        assert response.status_code == 200, (query, response.get_json())
        assert response.get_json()["total"] == 1


@pytest.mark.parametrize("path", ["/api/users", "/api/email-config", "/api/data-sources", "/api/links/x"])
def test_a_query_string_with_raw_bytes_that_are_not_utf8_is_a_400(harness, admin, path):
    # What a client sends unencoded arrives as Latin-1 in the WSGI environ; werkzeug decodes it as UTF-8.
    harness.app.testing = False  # answer as production does
    for raw in ("\x82=1", "offset=\xff", "a=\xe4&limit=1"):
        response = admin.get(path, environ_overrides={"QUERY_STRING": raw})
        assert response.status_code == 400, (raw, response.get_data(as_text=True))
        assert response.get_json()["code"] == "bad_request"
    assert admin.get(path, environ_overrides={"QUERY_STRING": "x=%C3%A4"}).status_code != 400  # encoded: fine


# --- data sources that point nowhere ----------------------------------------------------------------


def _nowhere_sources() -> list[dict]:
    closed_port = free_port()  # nothing listens there
    return [
        {"name": "closed port", "kind": "postgresql", "host": "127.0.0.1", "port": closed_port, "database": "x"},
        {"name": "no such host", "kind": "postgresql", "host": "no-such-host.invalid", "database": "x"},
        {
            "name": "no such database",
            "kind": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "database": f"nope_{uuid.uuid4().hex[:8]}",
            "username": "nobody_here",
        },
        {"name": "mysql closed port", "kind": "mysql", "host": "127.0.0.1", "port": closed_port, "database": "x"},
        {"name": "missing file", "kind": "sqlite", "path": "does/not/exist.db"},
    ]


def test_sources_that_point_nowhere_test_as_not_ok_and_introspect_as_unavailable(admin, tmp_path):
    (tmp_path / "sqlite" / "a-directory.db").mkdir()
    sources = [*_nowhere_sources(), {"name": "a directory", "kind": "sqlite", "path": "a-directory.db"}]
    for body in sources:
        created = admin.post("/api/data-sources", json=body)
        assert created.status_code == 201, (body["name"], created.get_json())
        source_id = created.get_json()["id"]
        tested = admin.post(f"/api/data-sources/{source_id}/test")
        assert tested.status_code == 200, (body["name"], tested.get_json())
        assert tested.get_json()["ok"] is False and tested.get_json()["reason"], (body["name"], tested.get_json())
        for path in (f"/api/data-sources/{source_id}/tables", f"/api/data-sources/{source_id}/tables/t/columns"):
            response = admin.get(path)
            assert response.status_code == 503, (body["name"], path, response.get_json())
            assert response.get_json()["code"] == "data_source_unavailable", response.get_json()
            assert response.get_json()["message"].startswith("Cannot read the data source")


def test_a_table_in_a_schema_a_sqlite_source_does_not_have_is_a_404_not_a_database_outage(admin, sqlite_source):
    # SQLite answers "unknown database r", an OperationalError; it used to be reported as the application
    # database being down (503 database_unavailable).
    for table in ("r.x", "x.y.z", "t.", "..", "'.t"):
        response = admin.get(f"/api/data-sources/{sqlite_source['id']}/tables/{table}/columns")
        assert response.status_code == 404, (table, response.get_json())
    for table in ("t", "main.t"):
        assert admin.get(f"/api/data-sources/{sqlite_source['id']}/tables/{table}/columns").status_code == 200


def test_connection_options_the_driver_would_choke_on_are_a_422_naming_the_option(admin):
    closed_port = free_port()
    postgres = {"name": "p", "kind": "postgresql", "host": "127.0.0.1", "port": closed_port, "database": "x"}
    mysql = {**postgres, "kind": "mysql"}
    for body, option in (
        ({**postgres, "options": {"sslmode": "not-a-mode"}}, "options.sslmode"),
        ({**postgres, "options": {"application_name": 7}}, "options.application_name"),
        ({**postgres, "options": {"target_session_attrs": ["any"]}}, "options.target_session_attrs"),
        ({**mysql, "options": {"charset": "no-such-charset"}}, "options.charset"),  # PyMySQL: AttributeError
    ):
        assert_validation_error(admin.post("/api/data-sources", json=body), option)
    fine = admin.post("/api/data-sources", json={**mysql, "options": {"charset": "utf8mb4"}})
    assert fine.status_code == 201, fine.get_json()


@pytest.mark.parametrize("host", ["a..b", ".", "a" * 64 + ".example.com", "\U000fc580", "ok.example.com,a..b"])
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_host_name_the_resolver_cannot_take_is_a_422(admin, kind, host):
    # getaddrinfo raises a UnicodeError (IDNA) for these, not a lookup failure.
    body = {"name": "h", "kind": kind, "host": host, "database": "x"}
    assert_validation_error(admin.post("/api/data-sources", json=body), "host")


def test_sqlite_paths_the_file_system_refuses_test_as_not_ok(admin):
    # A file name longer than the file system takes (ENAMETOOLONG) used to escape as an OSError.
    for path in ("a" * 300 + ".db", "x/" * 400 + "y.db", "dir/" + "b" * 256 + "/c.db"):
        created = admin.post("/api/data-sources", json={"name": "long", "kind": "sqlite", "path": path})
        assert created.status_code == 201, created.get_json()
        source_id = created.get_json()["id"]
        tested = admin.post(f"/api/data-sources/{source_id}/test")
        assert tested.status_code == 200 and tested.get_json()["ok"] is False, tested.get_json()
        assert admin.get(f"/api/data-sources/{source_id}/tables").status_code == 503


def test_sqlite_paths_too_long_for_the_file_system_on_a_sqlite_application_database(api):
    # With SQLite as the application database, saving compares the path with the application's file.
    admin = api.create_user("root@example.com", "admin")
    created = admin.post("/api/data-sources", json={"name": "long", "kind": "sqlite", "path": "a" * 300 + ".db"})
    assert created.status_code == 201, created.get_json()
    tested = admin.post(f"/api/data-sources/{created.get_json()['id']}/test")
    assert tested.status_code == 200 and tested.get_json()["ok"] is False, tested.get_json()


def test_a_source_that_is_the_application_database_or_a_superuser_is_refused_with_a_422(admin, harness):
    app_db = sa.engine.make_url(harness.settings.database_url)
    own = {
        "name": "own",
        "kind": "postgresql",
        "host": app_db.host,
        "port": app_db.port or 5432,
        "database": app_db.database,
        "username": app_db.username,
    }
    superuser = {**own, "database": "postgres", "username": "postgres"}
    for body, refused in ((own, "database"), (superuser, "username")):
        response = admin.post("/api/data-sources", json=body)
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["code"] == "data_source_refused" and refused in response.get_json()["errors"]


# --- the fuzzer ---------------------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("BIAPP_FUZZ_SEED", "20240611"))
FUZZ_EXAMPLES = int(os.environ.get("BIAPP_FUZZ_EXAMPLES", "12"))
FUZZ_SCENARIOS = int(os.environ.get("BIAPP_FUZZ_SCENARIOS", "50"))
FUZZ_ADMIN = "fuzz-admin@example.com"


def _published_openapi() -> dict:
    """The OpenAPI document exactly as /api/openapi.json serves it (it does not depend on the database)."""
    settings = make_settings()
    factory = make_session_factory(make_engine(settings.database_url))
    app = create_app(settings, publisher=RecordingPublisher(), session_factory=factory)
    return app.test_client().get("/api/openapi.json").get_json()


schema = schemathesis.openapi.from_dict(
    _published_openapi(),
    config=schemathesis.Config.from_dict(
        {
            "seed": FUZZ_SEED,
            # Examples per operation for the fuzzing phase; the examples and coverage phases add their own.
            "generation": {"max-examples": FUZZ_EXAMPLES, "database": "none"},
        }
    ),
)


@dataclass
class World:
    """Objects that exist before the fuzzer starts, so that `{id}` paths reach real handlers, not a 404.

    `ids` live for the whole run; PUT, PATCH and DELETE take theirs from `disposable`: copies of the same.
    Filled by the `fuzzing` fixture; read by the hooks below while Hypothesis draws.
    """

    ids: dict[str, list[str]] = field(default_factory=dict)
    disposable: dict[str, list[str]] = field(default_factory=dict)


WORLD = World()
# Body fields that name another object, and the path parameter whose ids they take.
BODY_REFERENCES = {
    "data_source_id": "source_id",
    "entity_id": "entity_id",
    "saved_query_id": "query_id",
    "dashboard_id": "dashboard_id",
    "table": "table",
}


def _generated_or_real(value, real: list[str]):
    """The generated value or one of the real ids; Hypothesis shrinks towards the generated one."""
    return st.sampled_from([value, *real]) if real else st.just(value)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters:
        return st.just(path_parameters)
    # What changes or deletes an object takes a disposable one: the others keep working for the whole run.
    pool = WORLD.disposable if context.operation.method.upper() in ("PUT", "PATCH", "DELETE") else WORLD.ids
    return st.fixed_dictionaries(
        {name: _generated_or_real(value, pool.get(name, [])) for name, value in path_parameters.items()}
    )


@schema.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    choices = {
        key: _generated_or_real(body[key], WORLD.ids.get(kind, []))
        for key, kind in BODY_REFERENCES.items()
        if isinstance(body.get(key), str)
    }
    widgets = body.get("widgets")
    if isinstance(widgets, list) and widgets and all(isinstance(w, dict) for w in widgets):
        choices["widgets"] = st.tuples(
            *(
                _generated_or_real(w.get("saved_query_id"), WORLD.ids.get("query_id", [])).map(
                    lambda query_id, w=w: {**w, "saved_query_id": query_id} if "saved_query_id" in w else w
                )
                for w in widgets
            )
        ).map(list)
    if context.operation.path.startswith("/api/data-sources") and body.get("kind") in CONNECTION_FIELDS:
        # The OpenAPI cannot say which fields each kind needs: supply what is missing, so that fuzzed
        # sources get saved, and then tested and introspected, instead of stopping at a 422.
        for name, values in CONNECTION_FIELDS[body["kind"]].items():
            if not body.get(name):
                choices[name] = st.sampled_from(values)
    if not choices:
        return st.just(body)
    return st.fixed_dictionaries(choices).map(lambda picked: {**body, **picked})


# Places fuzzed sources point at: missing, closed or refusing (the test server does not know the fuzzer's
# user names), never the application database.
CONNECTION_FIELDS = {
    "sqlite": {"path": ["fuzz.db", "missing.db", "sub/dir/missing.db"]},
    "postgresql": {"host": ["127.0.0.1", "localhost", "no-such-host.invalid"], "database": ["fuzz", "postgres"]},
    "mysql": {"host": ["127.0.0.1", "no-such-host.invalid"], "database": ["fuzz"]},
}


def unreachable_source(response) -> bool:
    """A 503 about a data source that cannot be reached: the fuzzer makes up hosts, ports and files, and
    "your data source is down" is the true answer (DataSourceUnavailableError). Any other 5xx is a bug;
    "database_unavailable" too, since the application's own database is up all along."""
    if response.status_code != 503:
        return False
    try:
        return json.loads(response.content).get("code") == "data_source_unavailable"
    except ValueError:
        return False


def no_server_error(ctx, response, case):
    """schemathesis' not_a_server_error, except for an unreachable made-up data source."""
    if not unreachable_source(response):
        return not_a_server_error(ctx, response, case)
    return None


# No 5xx, and every answer as the OpenAPI describes it: status, content type and body.
FUZZ_CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Fuzzing:
    """The app on PostgreSQL, called in-process as an admin with a fresh token for every request.

    A fresh token per call keeps the fuzzer logged in whatever it does: `POST /api/auth/logout` revokes
    only the token of that one call, and a password change (`PATCH /api/users/{id}` on itself) bumps the
    password version every later token is minted with.
    """

    def __init__(self, harness):
        self.harness = harness
        self.app = harness.app

    def headers(self) -> dict:
        with self.app.app_context(), self.harness.session_factory() as session:
            user = session.execute(sa.select(User).where(User.email == FUZZ_ADMIN)).scalar_one()
            claims = {"role": user.role, "pwv": user.password_version}
            token = create_access_token(identity=str(user.id), additional_claims=claims)
        return {"Authorization": f"Bearer {token}"}

    def call_kwargs(self) -> dict:
        return {"app": self.app, "headers": self.headers()}


def _seed_world(harness, admin) -> World:
    """Two of everything through the API: the first for every operation, the second for PUT, PATCH and DELETE."""
    with sqlite3.connect(Path(harness.settings.sqlite_root) / "fuzz.db") as conn:
        conn.execute("create table orders (id integer, region text, amount numeric, placed date)")
        conn.executemany(
            "insert into orders values (?, ?, ?, ?)", [(1, "EMEA", 10.5, "2024-01-02"), (2, "APAC", 3, None)]
        )
    admin.put(
        "/api/email-config?scope=system",
        json={"host": "127.0.0.1", "port": free_port(), "security": "none", "from_address": "reports@example.com"},
    )

    def create(path: str, body: dict) -> str:
        response = admin.post(path, json=body)
        assert response.status_code == 201, (path, response.get_json())
        return response.get_json()["id"]

    world = World()
    me = admin.get("/api/auth/me").get_json()["id"]
    schedule = {"frequency": "weekly", "time": "09:00", "days_of_week": [0], "timezone": "Europe/Berlin"}
    for n, pool in enumerate((world.ids, world.disposable)):
        source = create("/api/data-sources", {"name": f"Fuzz {n}", "kind": "sqlite", "path": "fuzz.db"})
        entity = create(
            "/api/semantic-entities",
            {
                "name": f"Orders {n}",
                "data_source_id": source,
                "table": "orders",
                "dimensions": [
                    {"name": "region", "column": "region", "type": "string"},
                    {"name": "placed", "column": "placed", "type": "date"},
                ],
                "measures": [{"name": "revenue", "column": "amount", "aggregation": "sum"}],
                "shared": True,
            },
        )
        sql = create(
            "/api/saved-queries", {"name": f"SQL {n}", "data_source_id": source, "sql": "select * from orders"}
        )
        semantic = create(
            "/api/saved-queries",
            {
                "name": f"Semantic {n}",
                "entity_id": entity,
                "dimensions": ["region"],
                "measures": ["revenue"],
                "filters": [{"field": "placed", "op": "gte", "value": "last_30_days"}],
            },
        )
        dashboard = create(
            "/api/dashboards",
            {"name": f"Board {n}", "widgets": [{"title": "Revenue", "saved_query_id": semantic, "chart": "bar"}]},
        )
        common = {"schedule": schedule, "recipients": ["a@example.com"], "cc": ["b@example.com"]}
        report = create(
            "/api/scheduled-reports",
            {
                "name": f"Report {n}",
                "saved_query_id": sql,
                "formats": ["csv", "xlsx"],
                "subject": "Orders {{date}}",
                **common,
            },
        )
        board_report = create(
            "/api/scheduled-reports",
            {"name": f"Board report {n}", "dashboard_id": dashboard, "formats": ["pdf"], **common},
        )
        alert = create(
            "/api/alerts",
            {
                "name": f"Alert {n}",
                "saved_query_id": semantic,
                "condition": {"kind": "value", "column": "revenue", "aggregate": "sum", "op": "gt", "value": 5},
                **common,
            },
        )
        execution = admin.post(f"/api/scheduled-reports/{report}/run").get_json()["execution_id"]
        admin.post(f"/api/alerts/{alert}/evaluate")
        user = create(
            "/api/users", {"email": f"viewer{n}@example.com", "password": "correct horse battery", "role": "viewer"}
        )
        pool.update(
            source_id=[source],
            entity_id=[entity],
            query_id=[sql, semantic],
            dashboard_id=[dashboard],
            report_id=[report, board_report],
            alert_id=[alert],
            execution_id=[execution],
            user_id=[user],
            table=["orders", "main.orders"],
        )
    world.ids["user_id"].append(me)
    world.disposable["user_id"].append(me)  # demote, deactivate or delete yourself: refused
    return world


@pytest.fixture(scope="module")
def fuzzing(pg_database_url, pg_engine, tmp_path_factory):
    truncate_all(pg_engine)
    harness = build_harness(
        pg_database_url,
        tmp_path_factory.mktemp("fuzz"),
        BIAPP_SMTP_TIMEOUT_S="2",  # the fuzzer's SMTP servers are made up: fail fast
        BIAPP_CONNECTION_TEST_RATE_LIMIT="100000 per minute",  # a 429 would hide what a test does
        BIAPP_ALLOW_SIGNUP="true",  # else POST /api/auth/register is a 404 whatever it is sent
    )
    admin = harness.create_user(FUZZ_ADMIN, role="admin")
    world = _seed_world(harness, admin)
    WORLD.ids, WORLD.disposable = world.ids, world.disposable
    # Answer a 500 as production does, instead of raising the exception into the test client.
    harness.app.testing = False
    yield Fuzzing(harness)
    WORLD.ids, WORLD.disposable = {}, {}
    truncate_all(pg_engine)


@schema.parametrize()
def test_no_operation_answers_a_server_error(case, fuzzing):
    case.call_and_validate(**fuzzing.call_kwargs(), checks=FUZZ_CHECKS)


def test_no_sequence_of_operations_answers_a_server_error(fuzzing):
    """Scenarios over the links Schemathesis infers from the OpenAPI (an id a POST answers, used by the
    GET, PUT, DELETE and actions on that path): fuzzed data sources are tested and introspected, and so on.

    A failed check is recorded, not raised: a raise makes Hypothesis replay the scenario to report it, and a
    replay against a database the first run already changed draws other values and ends as `Flaky` instead.
    For the same reason a `Flaky` ends a round early, and the next round carries on with the next seed.
    """
    failures: list[str] = []
    scenarios = 0

    class Machine(schema.as_state_machine()):
        def setup(self):
            nonlocal scenarios
            scenarios += 1

        def get_call_kwargs(self, case):
            return fuzzing.call_kwargs()

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            try:
                case.validate_response(response, checks=FUZZ_CHECKS)
            except Exception as exc:  # schemathesis' FailureGroup: what failed, and how to send it again
                failures.append(f"{exc}\n{case.as_curl_command()}")

    for round_ in range(5):
        settings = hypothesis.settings(
            max_examples=FUZZ_SCENARIOS - scenarios,
            stateful_step_count=10,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        try:
            hypothesis.seed(FUZZ_SEED + round_)(Machine).run(settings=settings)
        except hypothesis.errors.Flaky:
            pass
        if scenarios >= FUZZ_SCENARIOS or failures:
            break
    assert not failures, "\n\n".join(failures)
    assert scenarios >= FUZZ_SCENARIOS // 2, f"only {scenarios} scenarios ran"
