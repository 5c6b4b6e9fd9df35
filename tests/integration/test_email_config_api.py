"""/api/email-config against real aiosmtpd servers: presets, saving, and the connection test.

As an admin, whose connections may reach loopback and who is told the precise reason of a failure
(non-admins: tests/integration/test_email_config_boundaries.py).
"""

from __future__ import annotations

import logging
import threading

import pytest

from tests.conftest import build_harness
from tests.integration.test_mail_helpers import SMTP_PASSWORD, SMTP_USER, PasswordCheck, ScriptedHandler, start_smtp
from tests.support import free_port


class RecordingPasswords(PasswordCheck):
    """Accepts the right login and remembers every password a client offered."""

    def __init__(self, username: str, password: str):
        super().__init__(username, password)
        self.offered: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        with self.lock:
            self.offered.append(getattr(auth_data, "password", b""))
        return super().__call__(server, session, envelope, mechanism, auth_data)


class SenderRefusing(ScriptedHandler):
    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        return "553 5.7.1 sender address not owned by user"


@pytest.fixture
def auth_server():
    handler = ScriptedHandler()
    check = RecordingPasswords(SMTP_USER, SMTP_PASSWORD)
    controller, port = start_smtp(handler, authenticator=check, auth_require_tls=False)
    yield handler, check, port
    controller.stop()


def _config(port: int, **extra) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "from_address": "reports@example.com",
        "from_name": "Reports",
        **extra,
    }


def test_presets_list_the_common_providers_with_ports_security_and_app_password_notes(api):
    client = api.create_user("ana@example.com", role="admin")
    response = client.get("/api/email-config/presets")
    assert response.status_code == 200
    presets = {p["key"]: p for p in response.get_json()}
    assert set(presets) == {"gmail", "outlook", "yahoo", "ses", "custom"}
    assert (presets["gmail"]["host"], presets["gmail"]["port"], presets["gmail"]["security"]) == (
        "smtp.gmail.com",
        587,
        "starttls",
    )
    assert (presets["yahoo"]["port"], presets["yahoo"]["security"]) == (465, "ssl")
    assert presets["outlook"]["host"] == "smtp.office365.com"
    assert "amazonaws.com" in presets["ses"]["host"]
    assert "app password" in presets["gmail"]["notes"] and "app password" in presets["yahoo"]["notes"]
    assert all(p["allowed"] for p in presets.values())


def test_saved_password_is_write_only_and_the_saved_config_logs_in(api, auth_server, caplog):
    handler, check, port = auth_server
    client = api.create_user("ana@example.com", role="admin")
    with caplog.at_level(logging.DEBUG):
        saved = client.put("/api/email-config", json=_config(port))
        fetched = client.get("/api/email-config")
        tested = client.post("/api/email-config/test", json={"send_test_message": True})
    assert saved.status_code == 200 and fetched.status_code == 200
    assert fetched.get_json()["has_password"] is True
    body = tested.get_json()
    assert tested.status_code == 200, body
    assert body["ok"] is True and body["reason"] is None
    assert body["sent_to"] == "ana@example.com"
    (mail,) = handler.received
    assert mail.recipients == ["ana@example.com"]
    assert "test message" in mail.message["Subject"]
    for response in (saved, fetched, tested):
        assert SMTP_PASSWORD not in response.get_data(as_text=True)
    assert SMTP_PASSWORD not in caplog.text


def test_wrong_password_answers_authentication_without_echoing_it(api, auth_server, caplog):
    _, _, port = auth_server
    client = api.create_user("ana@example.com", role="admin")
    with caplog.at_level(logging.DEBUG):
        response = client.post("/api/email-config/test", json=_config(port, password="wrong-Passw0rd-xyz"))
    body = response.get_json()
    assert response.status_code == 200
    assert body["ok"] is False and body["reason"] == "authentication"
    assert "rejected the username or password" in body["message"]
    assert "wrong-Passw0rd-xyz" not in response.get_data(as_text=True)
    assert "wrong-Passw0rd-xyz" not in caplog.text


@pytest.mark.parametrize(
    ("host", "reason", "words"),
    [
        ("no-such-host.invalid", "dns", "could not be resolved"),
        ("127.0.0.1", "refused", "refused the connection"),
    ],
)
def test_connection_failures_name_the_reason(api, host, reason, words):
    client = api.create_user("ana@example.com", role="admin")
    response = client.post("/api/email-config/test", json=_config(free_port(), host=host))
    body = response.get_json()
    assert body["ok"] is False and body["reason"] == reason and words in body["message"]


def test_starttls_on_a_server_without_it_answers_tls(api):
    controller, port = start_smtp(ScriptedHandler())
    try:
        client = api.create_user("ana@example.com", role="admin")
        body = client.post("/api/email-config/test", json=_config(port, security="starttls", username=None)).get_json()
    finally:
        controller.stop()
    assert body["ok"] is False and body["reason"] == "tls"


def test_a_stalled_server_answers_timeout(sqlite_url, tmp_path):
    harness = build_harness(sqlite_url, tmp_path, BIAPP_SMTP_TIMEOUT_S="1")
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        client = harness.create_user("ana@example.com", role="admin")
        body = client.post("/api/email-config/test", json=_config(listener.getsockname()[1])).get_json()
    finally:
        listener.close()
    assert body["ok"] is False and body["reason"] == "timeout"


def test_refused_sender_answers_sender_rejected(api):
    controller, port = start_smtp(SenderRefusing())
    try:
        client = api.create_user("ana@example.com", role="admin")
        body = client.post(
            "/api/email-config/test", json=_config(port, username=None, send_test_message=True)
        ).get_json()
    finally:
        controller.stop()
    assert body["ok"] is False and body["reason"] == "sender_rejected"
    assert "553" in body["message"]


def test_the_saved_password_is_never_offered_to_another_host(api, auth_server):
    _, _, saved_port = auth_server
    other = ScriptedHandler()
    other_check = RecordingPasswords(SMTP_USER, "other")
    controller, other_port = start_smtp(other, authenticator=other_check, auth_require_tls=False)
    try:
        client = api.create_user("ana@example.com", role="admin")
        assert client.put("/api/email-config", json=_config(saved_port)).status_code == 200
        probe = _config(other_port, host="localhost")
        del probe["password"]
        body = client.post("/api/email-config/test", json=probe).get_json()
    finally:
        controller.stop()
    assert body["ok"] is False
    assert SMTP_PASSWORD.encode() not in other_check.offered


def test_allow_list_refuses_other_hosts_on_save_and_test(sqlite_url, tmp_path, auth_server):
    _, check, port = auth_server
    harness = build_harness(sqlite_url, tmp_path, BIAPP_SMTP_ALLOWED_HOSTS=".example.com,smtp.gmail.com")
    client = harness.create_user("ana@example.com", role="admin")

    saved = client.put("/api/email-config", json=_config(port))
    tested = client.post("/api/email-config/test", json=_config(port))
    presets = {p["key"]: p["allowed"] for p in client.get("/api/email-config/presets").get_json()}

    assert saved.status_code == 422 and "BIAPP_SMTP_ALLOWED_HOSTS" in saved.get_json()["errors"]["host"][0]
    assert tested.status_code == 422
    assert check.offered == [], "no connection may be made to a host outside the allow-list"
    assert presets["gmail"] is True and presets["yahoo"] is False
