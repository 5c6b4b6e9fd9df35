"""SQLite sources: a plain file inside BIAPP_SQLITE_ROOT, opened read-only, never the app's own file.

The attacks seen: `%2e%2e/biapp.db` looked like a folder inside the root while SQLite decoded it to
`..`; `sales.db?mode=rw&x=` opened the file read-write.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from shared.db import transaction
from shared.models import DataSource


@pytest.fixture
def admin(api):
    return api.create_user("admin@example.com", role="admin")


@pytest.fixture
def sales_file(api):
    path = f"{api.settings.sqlite_root}/sales.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table orders (region text, amount numeric)")
        connection.execute("insert into orders values ('EMEA', 10)")
    return path


def _app_file(api) -> str:
    return api.settings.database_url.removeprefix("sqlite:///")


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/biapp.db",
        "%2E%2E%2Fbiapp.db",
        "sales.db?mode=rw&x=",
        "sales.db?mode=rwc",
        "sales.db#frag",
        "file:sales.db",
        "FILE:sales.db?mode=rw",
        "sales%00.db",
    ],
)
def test_uri_tricks_in_a_sqlite_path_are_refused(api, admin, sales_file, path):
    os.makedirs(f"{api.settings.sqlite_root}/%2e%2e", exist_ok=True)
    response = admin.post("/api/data-sources", json={"name": "x", "kind": "sqlite", "path": path})
    assert response.status_code == 422
    assert "path" in response.get_json()["errors"]


def test_a_hard_link_to_the_app_database_inside_the_root_is_refused(api, admin):
    os.link(_app_file(api), f"{api.settings.sqlite_root}/innocent.db")
    response = admin.post("/api/data-sources", json={"name": "x", "kind": "sqlite", "path": "innocent.db"})
    assert response.status_code == 422
    assert "application's own database" in response.get_json()["errors"]["path"][0]


def test_a_copy_of_the_app_database_is_recognised_by_its_tables(api, admin):
    shutil.copy(_app_file(api), f"{api.settings.sqlite_root}/copy.db")
    response = admin.post("/api/data-sources", json={"name": "x", "kind": "sqlite", "path": "copy.db"})
    assert response.status_code == 422
    assert "application's own database" in response.get_json()["message"]


def test_a_source_whose_file_became_a_link_out_is_refused_at_the_next_query(api, admin, sales_file, tmp_path):
    """The path is checked again at every open, not only when the source was saved."""
    source = admin.post("/api/data-sources", json={"name": "Sales", "kind": "sqlite", "path": "sales.db"}).get_json()
    query = admin.post(
        "/api/saved-queries", json={"name": "q", "data_source_id": source["id"], "sql": "select * from orders"}
    ).get_json()
    assert admin.post(f"/api/saved-queries/{query['id']}/preview").status_code == 200
    os.remove(sales_file)
    os.symlink(_app_file(api), sales_file)
    preview = admin.post(f"/api/saved-queries/{query['id']}/preview")
    assert preview.status_code == 422
    assert "password_hash" not in preview.get_data(as_text=True)


def test_a_stored_path_with_a_uri_trick_never_opens(api, admin, sales_file):
    """A row written before these checks existed (or by hand) is refused when it is used."""
    with transaction(api.session_factory) as session:
        source = DataSource(name="old", kind="sqlite", path="sales.db?mode=rw", options={})
        session.add(source)
    assert admin.post(f"/api/data-sources/{source.id}/test").status_code == 422
