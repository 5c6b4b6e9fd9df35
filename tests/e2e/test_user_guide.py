"""docs/user-guide.md cannot drift from the code: its bash examples run, in order, against a live server.

The server is `biapp standalone` on a free port with PostgreSQL as its database, a sales
database of its own as the data source (read by a plain login that may only SELECT, as the
guide asks), and a real SMTP server (aiosmtpd, with AUTH) as the user's mail account.
The guide's `sh` block names the variables a reader sets; the test sets the same ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import PG_ADMIN_DSN, SmtpRecorder, create_data_database, drop_pg_database, pg_admin_dsn
from tests.integration.channel_receivers import Receivers
from tests.support import ROOT, Process, base_env, free_port, wait_until

pytestmark = pytest.mark.e2e

GUIDE = (ROOT / "docs" / "user-guide.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SMTP_USER, SMTP_PASSWORD = "reports@example.com", "abcd efgh ijkl mnop"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "correct horse battery staple"


def blocks(language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(GUIDE) if m.group(1) == language]


@pytest.fixture
def sales_db(pg_reader):
    """A database of its own with an orders table, readable by `pg_reader`: the data source the guide describes."""
    name = create_data_database("biapp_guide_sales", pg_reader.username)
    with psycopg.connect(pg_admin_dsn(name), autocommit=True) as conn:
        conn.execute(
            "create table public.orders (id serial primary key, region text not null, ordered_on date not null,"
            " amount numeric(12, 2) not null)"
        )
        conn.execute(
            "insert into public.orders (region, ordered_on, amount) select (array['EMEA','AMER','APAC'])[1 + g % 3],"
            " date '2026-01-01' + g, 10 + g * 3.5 from generate_series(1, 60) g"
        )
    yield name
    drop_pg_database(name)


@pytest.fixture
def mail_account():
    """A real SMTP server that wants a login, like the reader's provider (TLS aside)."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == SMTP_USER and auth_data.password.decode() == SMTP_PASSWORD
        return AuthResult(success=ok)

    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    yield port, recorder
    controller.stop()


@pytest.fixture
def server(pg_url, tmp_path):
    env = base_env(BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL="memory://")
    subprocess.run(
        [str(Path(sys.executable).with_name("biapp")), "users", "create-admin", "--email", ADMIN_EMAIL],
        env={**os.environ, **env, "BIAPP_ADMIN_PASSWORD": ADMIN_PASSWORD},
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = Process(
        ["standalone", "--port", str(port), "--data-dir", str(tmp_path / "var")],
        env,
        log=tmp_path / "standalone.log",
    )

    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, what="biapp standalone to answer /readyz")
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()


def test_the_guide_names_the_variables_a_reader_sets():
    (setup,) = blocks("sh")
    assert set(re.findall(r"\b([A-Z][A-Z_]+)=", setup)) == {
        "BIAPP", "BIAPP_EMAIL", "BIAPP_PASSWORD", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USER",
        "SMTP_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD",
        "WEBHOOK_URL", "SLACK_WEBHOOK_URL", "TEAMS_WEBHOOK_URL",
    }  # fmt: skip
    assert len(blocks("bash")) >= 12


@pytest.fixture
def receivers():
    running = Receivers().start()
    yield running
    running.stop()


def test_every_curl_example_in_the_user_guide_works_against_a_live_api(
    server, sales_db, pg_reader, mail_account, tmp_path, receivers
):
    base_url, process = server
    smtp_port, mailbox = mail_account
    hook = receivers.script("/hooks/biapp", [200])
    slack = receivers.script("/services/T000/B000/XXXX", [200], body="ok")
    teams = receivers.script("/workflows/abc", [202], body="")
    pg = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    variables = {
        "BIAPP": base_url,
        "BIAPP_EMAIL": ADMIN_EMAIL,
        "BIAPP_PASSWORD": ADMIN_PASSWORD,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_SECURITY": "none",
        "SMTP_USER": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "DB_HOST": pg.get("host", "127.0.0.1"),
        "DB_PORT": str(pg.get("port", 5432)),
        "DB_NAME": sales_db,
        "DB_USER": pg_reader.username,
        "DB_PASSWORD": pg_reader.password,
        "TMPDIR": str(tmp_path),
        "WEBHOOK_URL": receivers.url("/hooks/biapp"),
        "SLACK_WEBHOOK_URL": receivers.url("/services/T000/B000/XXXX"),
        "TEAMS_WEBHOOK_URL": receivers.url("/workflows/abc"),
    }
    script = "\n".join(f"echo '>>> example {n}'\n{block}" for n, block in enumerate(blocks("bash"), start=1))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **variables},
        capture_output=True,
        text=True,
        timeout=240,
    )
    (tmp_path / "guide-output.txt").write_text(result.stdout + "\n--- stderr\n" + result.stderr)
    assert result.returncode == 0, (
        f"the guide's examples failed:\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-3000:]}\n"
        f"--- server\n{process.output()[-3000:]}"
    )
    assert list(tmp_path.glob("*.xlsx")), "the example downloaded the workbook"
    subjects = [m.message["Subject"] for m in mailbox.messages]
    assert len(subjects) >= 3, subjects  # the connection test, the run and the test run
    assert any("[TEST]" in s for s in subjects) and any(s.startswith("Revenue ") for s in subjects)
    assert all(m.recipients == [ADMIN_EMAIL] for m in mailbox.messages)
    # Each channel got the test and the run: two requests each.
    assert [json.loads(r["body"])["type"] for r in hook.received] == ["destination.test", "report.delivered"]
    assert len(slack.received) == 2 and len(teams.received) == 2
