"""`biapp standalone --demo` in a fresh directory: the first email arrives by itself, the login is printed last."""

from __future__ import annotations

import re
import time
from email import message_from_bytes, policy

import requests

from tests.support import Process, free_port, wait_until

FIRST_EMAIL_WITHIN_S = 30


def test_standalone_demo_emails_the_dashboard_at_once_and_prints_the_login_last(tmp_path):
    port = free_port()
    data_dir = tmp_path / "var"
    started = time.monotonic()
    process = Process(
        ["standalone", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
        env={"BIAPP_ADMIN_PASSWORD": "demo password 123"},
        cwd=tmp_path,
        log=tmp_path / "standalone.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        outbox = data_dir / "outbox"
        emails = wait_until(
            lambda: sorted(outbox.glob("*.eml")), timeout=FIRST_EMAIL_WITHIN_S, what="the first demo email"
        )
        print(f"first demo email after {time.monotonic() - started:.1f} s")
        message = message_from_bytes(emails[0].read_bytes(), policy=policy.default)
        names = [a.get_filename() or "" for a in message.iter_attachments()]
        assert all(name.startswith("demo-sales-overview_") for name in names), names
        assert {name.split(".", 1)[1] for name in names} == {"xlsx", "pdf", "csv.zip"}, names

        wait_until(lambda: "login:" in process.output(), timeout=30, what="the demo block")
        lines = [line for line in process.output().splitlines() if line.strip()]
        block = lines[-5:]
        assert block[0].strip() == "Demo" and block[1].split() == ["console:", f"{base}/"], lines[-8:]
        assert block[2].split(None, 1) == ["login:", "admin@example.com / demo password 123"]
        assert str(outbox) in block[4]
        assert "mail.log" not in process.output(), "the mail sink's per-connection lines are debug detail"
        assert not re.search(r"lag_s=-", process.output())

        token = requests.post(
            f"{base}/api/auth/login", json={"email": "admin@example.com", "password": "demo password 123"}, timeout=10
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        reports = requests.get(f"{base}/api/scheduled-reports", headers=headers, timeout=10).json()["items"]
        assert [r["name"] for r in reports] == ["Demo: sales overview", "Demo: sales overview (Berlin)"]
        demo = reports[0]
        assert demo["dashboard_id"] and demo["formats"] == ["xlsx", "pdf", "csv"]
        assert (demo["schedule"]["frequency"], demo["schedule"]["time"]) == ("daily", "08:00")
        assert demo["last_execution"]["status"] == "success" and demo["last_execution"]["trigger"] == "manual"
    finally:
        assert process.stop() is not None
