"""Histories at scale on PostgreSQL: keyset cursors, a fixed number of statements per page, index plans.

One database for the module, seeded by the history benchmark's seeder (a few thousand runs, one report
holding a tenth of them, deliveries and artifact rows per run, alert events), then VACUUM ANALYZE so the
planner sees real statistics.
"""

from __future__ import annotations

import base64
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from bench.seed_history import ADMIN_EMAIL, OTHER_EMAIL, OWNER_EMAIL, PASSWORD, seed
from shared.db.migrate import upgrade
from tests.conftest import build_harness, create_pg_database, drop_pg_database, pg_app_url

SIZES = {"reports": 60, "executions": 6_000, "big": 600, "deliveries": 3, "artifacts": 2, "alerts": 4, "events": 2_000}
HISTORY_TABLES = ("report_executions", "alert_events", "deliveries")


@pytest.fixture(scope="module")
def seeded():
    name = create_pg_database("biapp_history")
    url = pg_app_url(name)
    upgrade(url)
    yield url, seed(url, **SIZES)
    drop_pg_database(name)


@pytest.fixture(scope="module")
def harness(seeded, tmp_path_factory):
    url, _ = seeded
    api = build_harness(url, tmp_path_factory.mktemp("history"))
    yield api
    api.session_factory.kw["bind"].dispose()


@pytest.fixture(scope="module")
def admin(harness):
    return harness.client().login(ADMIN_EMAIL, PASSWORD)


@pytest.fixture(scope="module")
def owner(harness):
    return harness.client().login(OWNER_EMAIL, PASSWORD)


@pytest.fixture(scope="module")
def other(harness):
    return harness.client().login(OTHER_EMAIL, PASSWORD)


@contextlib.contextmanager
def recorded(harness):
    """Every SQL statement (with its parameters) the application runs inside the block."""
    engine = harness.session_factory.kw["bind"]
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def lists(seeded) -> dict[str, str]:
    _, made = seeded
    return {
        "report history": f"/api/scheduled-reports/{made.big_report_id}/executions",
        "report history, filtered": f"/api/scheduled-reports/{made.big_report_id}/executions"
        "?status=success,failed&trigger=schedule&from=2000-01-01&to=2999-12-31",
        "all runs": "/api/executions",
        "all runs, filtered": "/api/executions?status=failed,partial&trigger=schedule,manual",
        "report history, failed": f"/api/scheduled-reports/{made.big_report_id}/executions?status=failed",
        "report history, tests": f"/api/scheduled-reports/{made.big_report_id}/executions?trigger=test",
        "all runs, failed": "/api/executions?status=failed",
        "alert events, errors": f"/api/alerts/{made.big_alert_id}/events?state=error",
        "reports": "/api/scheduled-reports",
        "alert events": f"/api/alerts/{made.big_alert_id}/events",
    }


def _with(url: str, **params) -> str:
    joined = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{joined}"


def _get(client, url):
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_json())
    return response


LIST_NAMES = ["report history", "report history, filtered", "all runs", "all runs, filtered", "reports", "alert events"]


@pytest.mark.parametrize("name", LIST_NAMES)
def test_statements_per_page_do_not_grow_with_the_page_size(harness, admin, seeded, name):
    url = lists(seeded)[name]
    counts = {}
    for limit in (5, 200):
        _get(admin, _with(url, limit=limit))  # warm: the token check's first lookups
        with recorded(harness) as statements:
            body = _get(admin, _with(url, limit=limit)).get_json()
        assert len(body["items"]) == min(limit, body["total"]), name
        counts[limit] = len(statements)
    assert counts[5] == counts[200], (name, counts)


@contextlib.contextmanager
def transaction_states(harness):
    """For every statement the application runs inside the block, whether its connection was inside a
    transaction when it was sent (psycopg's view of the session: a BEGIN was sent before it)."""
    engine = harness.session_factory.kw["bind"]
    states: list[tuple[str, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        states.append((conn.connection.dbapi_connection.info.transaction_status.name, statement[:80]))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield states
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("name", LIST_NAMES)
@pytest.mark.parametrize("who", ["admin", "owner"])
def test_a_list_page_is_the_token_check_and_one_statement_outside_a_transaction(harness, seeded, name, who, request):
    """Each database round trip costs a list page about a millisecond: a page is read by one statement
    (rows, their children, the count, the caller's right to see them), after the token's own check, and a
    read opens no transaction (no BEGIN and ROLLBACK around it)."""
    client = request.getfixturevalue(who)
    url = lists(seeded)[name]
    first = _get(client, _with(url, limit=20)).get_json()  # warm: fills the reports list's dump cache
    assert first["items"], name
    for page in (_with(url, limit=20), _with(url, limit=20, cursor=first["next_cursor"])):
        with transaction_states(harness) as states:
            body = _get(client, page).get_json()
        assert body["items"], (name, page)
        assert len(states) == 2, (name, who, states)
        assert {state for state, _ in states} == {"IDLE"}, (name, who, states)


def test_a_write_still_runs_in_one_transaction(harness, admin, seeded):
    _, made = seeded
    url = f"/api/scheduled-reports/{made.big_report_id}"
    name = _get(admin, url).get_json()["name"]
    with transaction_states(harness) as states:
        response = admin.patch(url, json={"name": name})
    assert response.status_code == 200, response.get_json()
    writes = [state for state, statement in states if statement.startswith(("UPDATE", "INSERT", "DELETE"))]
    assert writes and set(writes) == {"INTRANS"}, states  # after the reads of the same transaction


FILTERED = [
    "report history, failed",
    "report history, tests",
    "all runs, failed",
    "all runs, filtered",
    "alert events, errors",
]


@pytest.mark.parametrize("name", FILTERED)
def test_a_filtered_page_reads_its_rows_from_the_index(harness, admin, seeded, name):
    """A rare status or trigger means many runs skipped before a page is full (and before the count reaches
    its cap): those are skipped inside an index, never fetched from the table one by one. The table is read
    for the page's own rows, by primary key, and otherwise only for rows an index already matched (a bitmap
    scan of a small set); never by a plain index scan of a history index, which visits every row it skips."""
    url = lists(seeded)[name]
    body = _get(admin, _with(url, limit=20)).get_json()
    assert body["items"] and body["total"] < SIZES["executions"], name
    with recorded(harness) as statements:
        _get(admin, _with(url, limit=20))
    [(page, parameters)] = [(s, p) for s, p in statements if "page_total" in s]
    plan = _explain(harness, page, parameters)
    table = "alert_events" if "alert" in name else "report_executions"
    for line in plan.splitlines():
        if f" on {table} " in line and "Scan" in line:
            assert "Seq Scan" not in line, f"{name}:\n{plan}"
            if " Index Scan " in f" {line.strip()}":
                assert f"using pk_{table}" in line, f"{name}:\n{plan}"
    assert f" on {table} " in plan, plan


def _explain(harness, statement: str, parameters) -> str:
    engine = harness.session_factory.kw["bind"]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
    return "\n".join(rows)


@pytest.mark.parametrize("name", LIST_NAMES)
def test_history_queries_use_indexes(harness, admin, owner, seeded, name, monkeypatch):
    """No sequential scan of a history table for any statement of a first or a cursor page, admin or not.

    The planner is left to choose (no enable_seqscan): the tables hold thousands of rows, analysed, with
    the long report holding a tenth of the runs, as in the field. The count's cap is scaled down with the
    data (1,000 of a million runs in the field, 300 of 6,000 here): counting every row of a table is
    rightly a sequential scan, and a capped count is what keeps it off the table.
    """
    from services.api import pagination

    monkeypatch.setattr(pagination, "TOTAL_CAP", 300)
    url = lists(seeded)[name]
    checked = 0
    for client in (admin, owner):
        first = _get(client, _with(url, limit=50)).get_json()
        assert first["next_cursor"], name
        for page in (_with(url, limit=50), _with(url, limit=50, cursor=first["next_cursor"])):
            with recorded(harness) as statements:
                _get(client, page)
            for statement, parameters in statements:
                if not any(table in statement for table in HISTORY_TABLES):
                    continue
                plan = _explain(harness, statement, parameters)
                checked += 1
                for table in HISTORY_TABLES:
                    assert f"Seq Scan on {table}" not in plan, f"{name}: {statement}\n{plan}"
    assert checked >= 4


@pytest.mark.parametrize("name", ["report history", "all runs", "reports", "alert events"])
def test_cursor_pages_walk_the_same_rows_as_offsets(admin, seeded, name):
    url = lists(seeded)[name]
    by_offset = []
    offset = 0
    while len(by_offset) < 450:
        body = _get(admin, _with(url, limit=100, offset=offset)).get_json()
        by_offset += [item["id"] for item in body["items"]]
        offset += 100
        if not body["items"]:
            break
    by_cursor, cursor = [], None
    while len(by_cursor) < 450:
        response = _get(admin, _with(url, limit=100, **({"cursor": cursor} if cursor else {})))
        body = response.get_json()
        by_cursor += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        link = response.headers["Link"]
        assert link.endswith('>; rel="next"')
        assert parse_qs(urlsplit(link[1 : link.index(">")]).query)["cursor"] == [cursor]
    assert by_cursor == by_offset[: len(by_cursor)]
    assert len(set(by_cursor)) == len(by_cursor)


def test_the_last_page_has_no_cursor_and_totals_say_whether_they_are_exact(admin, seeded, monkeypatch):
    _, made = seeded
    from services.api import pagination

    monkeypatch.setattr(pagination, "TOTAL_CAP", 10_000)  # above this alert's event count
    url = lists(seeded)["alert events"]
    body = _get(admin, _with(url, limit=500)).get_json()
    assert body["total_exact"] is True
    total = body["total"]
    assert total > made.events // 2
    assert _get(admin, _with(url, limit=1, count="exact")).get_json()["total"] == total
    cursor, seen = body["next_cursor"], len(body["items"])
    while cursor:
        page = _get(admin, _with(url, limit=500, cursor=cursor))
        body = page.get_json()
        seen += len(body["items"])
        cursor = body["next_cursor"]
    assert seen == total
    assert "Link" not in page.headers

    capped = _get(admin, _with(lists(seeded)["all runs"], limit=1)).get_json()
    assert capped["total"] == made.executions and capped["total_exact"] is True  # under the cap
    exact = _get(admin, _with(lists(seeded)["all runs"], limit=1, count="exact")).get_json()
    assert exact["total"] == made.executions and exact["total_exact"] is True


def test_total_stops_at_the_cap(admin, seeded, monkeypatch):
    from services.api import pagination

    monkeypatch.setattr(pagination, "TOTAL_CAP", 1000)
    body = _get(admin, _with(lists(seeded)["all runs"], limit=3)).get_json()
    assert body["total"] == 1000 and body["total_exact"] is False
    body = _get(admin, _with(lists(seeded)["all runs"], limit=3, count="exact")).get_json()
    assert body["total"] == SIZES["executions"] and body["total_exact"] is True


def _cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        _cursor(["2024-01-01T00:00:00+00:00"]),
        _cursor(["yesterday", "0" * 32]),
        _cursor(["2024-01-01T00:00:00", "0" * 32]),  # no zone
        _cursor(["2024-01-01T00:00:00+00:00", "not-a-uuid"]),
        _cursor([1, 2]),
        _cursor({"a": 1}),
        _cursor(["9999-12-31T23:59:59+00:00", "0" * 32, "extra"]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 600,
    ],
)
def test_a_garbled_cursor_is_a_422_on_cursor(admin, seeded, cursor):
    for name in ("report history", "all runs", "alert events"):
        response = admin.get(_with(lists(seeded)[name], cursor=cursor))
        assert response.status_code == 422, (name, cursor, response.get_json())
        assert "cursor" in response.get_json()["errors"], response.get_json()
    response = admin.get(_with(lists(seeded)["reports"], cursor=_cursor(["x"])))
    assert response.status_code == 422 and "cursor" in response.get_json()["errors"]


def test_a_cursor_with_an_offset_is_a_422_on_offset(admin, seeded):
    url = lists(seeded)["report history"]
    cursor = _get(admin, _with(url, limit=2)).get_json()["next_cursor"]
    response = admin.get(_with(url, cursor=cursor, offset=10))
    assert response.status_code == 422
    assert "offset" in response.get_json()["errors"]
    assert _get(admin, _with(url, cursor=cursor, offset=0)).get_json()["items"]


def test_all_runs_show_only_reports_the_caller_may_see(harness, admin, owner, other, seeded):
    _, made = seeded
    theirs = {item["id"] for item in _get(other, "/api/scheduled-reports?limit=500").get_json()["items"]}
    assert theirs and made.big_report_id not in theirs
    for client, allowed in ((other, theirs), (owner, None)):
        body = _get(client, "/api/executions?limit=500").get_json()
        assert body["items"]
        reports = {item["report_id"] for item in body["items"]}
        if allowed is not None:
            assert reports <= allowed
        else:
            assert not reports & theirs
    assert {item["report_id"] for item in _get(admin, "/api/executions?limit=500").get_json()["items"]} & theirs
    # Asking for someone else's report gives nothing rather than their runs.
    filtered = _get(other, f"/api/executions?report_id={made.big_report_id}").get_json()
    assert filtered["items"] == [] and filtered["total"] == 0
    mine = _get(owner, f"/api/executions?report_id={made.big_report_id}&limit=5").get_json()
    assert {item["report_id"] for item in mine["items"]} == {made.big_report_id}
    assert _get(admin, "/api/executions?status=failed&limit=20").get_json()["items"]
    assert all(i["status"] == "failed" for i in _get(admin, "/api/executions?status=failed").get_json()["items"])
    assert admin.get("/api/executions?report_id=nope").status_code == 422


def test_reports_list_carries_last_and_next_run(admin, seeded):
    _, made = seeded
    items = _get(admin, "/api/scheduled-reports?limit=50").get_json()["items"]
    big = next(item for item in items if item["id"] == made.big_report_id)
    newest = _get(admin, f"/api/scheduled-reports/{made.big_report_id}/executions?limit=1").get_json()["items"][0]
    assert big["last_execution"]["id"] == newest["id"]
    assert big["next_run_at"]
    assert all(item["last_execution"] for item in items)
