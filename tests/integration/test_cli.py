"""The `biapp` command as operators run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from shared.db import make_engine
from tests.support import base_env

BIAPP = str(Path(sys.executable).with_name("biapp"))


def run(args, env, **kwargs):
    full_env = {**os.environ, **env}
    return subprocess.run([BIAPP, *args], env=full_env, capture_output=True, text=True, timeout=120, **kwargs)


def test_bad_setting_stops_every_command_with_one_clear_line():
    env = base_env(BIAPP_SECRET_KEY="too-short")
    for args in (["db", "upgrade"], ["worker", "renderer"], ["api"], ["scheduler"]):
        result = run(args, env)
        assert result.returncode == 2, args
        assert result.stderr.strip() == "biapp: configuration error: BIAPP_SECRET_KEY must be at least 32 characters"


def test_db_upgrade_then_create_admin_is_idempotent(pg_url):
    env = base_env(BIAPP_DATABASE_URL=pg_url)
    upgraded = run(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    first = run(["users", "create-admin", "--email", "Boss@Example.com", "--password", "a long password"], env)
    assert first.returncode == 0, first.stderr
    assert "created: boss@example.com" in first.stdout
    again = run(["users", "create-admin", "--email", "boss@example.com"], env)
    assert again.returncode == 0, again.stderr
    assert "already exists" in again.stdout
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select email, role from users")).all()
    engine.dispose()
    assert rows == [("boss@example.com", "admin")]


def test_create_admin_without_password_and_no_terminal_says_how(pg_url):
    env = base_env(BIAPP_DATABASE_URL=pg_url)
    result = run(["users", "create-admin", "--email", "x@example.com"], env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "--password or BIAPP_ADMIN_PASSWORD" in result.stderr
