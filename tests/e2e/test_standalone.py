"""`biapp standalone --demo` in a fresh directory: log in, run the demo report, find the email."""

from __future__ import annotations

from email import message_from_bytes, policy

import requests

from tests.support import Process, free_port, wait_until


def test_standalone_demo_delivers_an_email_with_the_report_attached(tmp_path):
    port = free_port()
    data_dir = tmp_path / "var"
    process = Process(
        ["standalone", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
        env={"BIAPP_ADMIN_PASSWORD": "demo password 123"},
        cwd=tmp_path,
        log=tmp_path / "standalone.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{base}/readyz"), timeout=60, what="standalone to be ready")
        output = process.output()
        assert "admin@example.com / demo password 123" in output
        assert str(data_dir / "outbox") in output

        token = requests.post(
            f"{base}/api/auth/login", json={"email": "admin@example.com", "password": "demo password 123"}, timeout=10
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        reports = requests.get(f"{base}/api/scheduled-reports", headers=headers, timeout=10).json()["items"]
        assert [r["name"] for r in reports] == ["Demo: revenue by region"]
        assert reports[0]["next_run_at"] is not None

        run = requests.post(f"{base}/api/scheduled-reports/{reports[0]['id']}/run", headers=headers, timeout=10)
        assert run.status_code == 202
        execution_id = run.json()["execution_id"]
        execution = wait_until(
            lambda: _finished(f"{base}/api/executions/{execution_id}", headers), timeout=60, what="demo run"
        )
        assert execution["status"] == "success", execution

        outbox = data_dir / "outbox"
        emails = wait_until(lambda: sorted(outbox.glob("*.eml")), timeout=30, what="an .eml in the outbox")
        message = message_from_bytes(emails[0].read_bytes(), policy=policy.default)
        attachments = list(message.iter_attachments())
        assert attachments, "the demo email carries the report"
        assert any((a.get_filename() or "").startswith("demo-revenue-by-region_") for a in attachments)
    finally:
        assert process.stop() is not None


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _finished(url: str, headers: dict):
    body = requests.get(url, headers=headers, timeout=10).json()
    return body if body["status"] in ("success", "partial", "failed", "skipped") else None
