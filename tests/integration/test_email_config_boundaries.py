"""A user's SMTP settings cannot turn the server into a port scanner or a password courier.

Real aiosmtpd servers and listening sockets on loopback prove what was (not) connected to.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from shared import email_configs
from shared.db import transaction
from shared.models import EmailConfig
from shared.smtp import SmtpFailure, SmtplibTransport
from tests.conftest import build_harness
from tests.integration.test_email_config_api import RecordingPasswords, _config
from tests.integration.test_mail_helpers import SMTP_PASSWORD, SMTP_USER, ScriptedHandler, start_smtp
from tests.support import free_port

LOOPBACK = ["127.0.0.1", "localhost", "127.1", "2130706433", "::ffff:127.0.0.1"]


@pytest.fixture
def api(sqlite_url, tmp_path):
    """The API with the outbound policy as shipped: nothing but public addresses for non-admins."""
    return build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="")


class Listener:
    """A listening socket that tells whether anyone connected to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    probe = Listener()
    yield probe
    probe.close()


@pytest.mark.parametrize("role", ["viewer", "analyst"])
@pytest.mark.parametrize("host", LOOPBACK)
def test_a_non_admin_can_neither_save_nor_test_a_loopback_smtp_host(api, listener, role, host):
    client = api.create_user(f"{role}@example.com", role=role)
    body = _config(listener.port, host=host)

    saved = client.put("/api/email-config", json=body)
    tested = client.post("/api/email-config/test", json=body)

    assert saved.status_code == 422 and "not an allowed destination" in saved.get_json()["errors"]["host"][0]
    assert tested.status_code == 422 and "host" in tested.get_json()["errors"]
    assert listener.connections() == 0, "nothing may connect to loopback on a non-admin's behalf"
    assert client.get("/api/email-config").get_json()["source"] == "none", "nothing was saved"


def test_an_admin_may_use_an_internal_smtp_host(api, listener):
    admin = api.create_user("root@example.com", role="admin")
    assert admin.put("/api/email-config", json=_config(listener.port)).status_code == 200
    assert admin.put("/api/email-config?scope=system", json=_config(listener.port)).status_code == 200


def test_a_stored_non_admin_config_on_loopback_is_refused_at_send_time(api, listener):
    """A configuration saved before the policy existed (or edited in the database) still never connects."""
    viewer = api.create_user("vera@example.com", role="viewer")
    me = viewer.get("/api/auth/me").get_json()
    with transaction(api.session_factory) as session:
        config = EmailConfig(
            owner_id=uuid.UUID(me["id"]),
            host="127.0.0.1",
            port=listener.port,
            security="none",
            from_address="vera@example.com",
        )
        session.add(config)
        session.flush()
        smtp = email_configs.sending_settings(session, api.settings, None, config)
    with pytest.raises(SmtpFailure) as failure:
        SmtplibTransport().open(smtp)
    assert failure.value.permanent and failure.value.reason == "not_allowed"
    assert listener.connections() == 0


def test_with_loopback_allowed_a_non_admin_learns_only_that_it_could_not_connect(sqlite_url, tmp_path, listener):
    harness = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="127.0.0.0/8", BIAPP_SMTP_TIMEOUT_S="1")
    viewer = harness.create_user("vera@example.com", role="viewer")
    admin = harness.create_user("root@example.com", role="admin")
    closed, stalled = _config(free_port()), _config(listener.port)

    for_viewer = [viewer.post("/api/email-config/test", json=body).get_json() for body in (closed, stalled)]
    for_admin = [admin.post("/api/email-config/test", json=body).get_json() for body in (closed, stalled)]

    assert [r["reason"] for r in for_viewer] == ["unreachable", "unreachable"]
    assert all(r["message"].startswith("Could not connect to 127.0.0.1:") for r in for_viewer)
    assert [r["reason"] for r in for_admin] == ["refused", "timeout"]


def test_connection_tests_are_rate_limited_per_user(sqlite_url, tmp_path):
    harness = build_harness(sqlite_url, tmp_path, BIAPP_CONNECTION_TEST_RATE_LIMIT="3 per minute")
    ana = harness.create_user("ana@example.com")
    bob = harness.create_user("bob@example.com")
    body = _config(25, host="no-such-host.invalid")
    statuses = [ana.post("/api/email-config/test", json=body).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert bob.post("/api/email-config/test", json=body).status_code == 200, "the limit is per user"


def test_viewers_cannot_read_the_system_smtp_settings(api):
    admin = api.create_user("root@example.com", role="admin")
    viewer = api.create_user("vera@example.com", role="viewer")
    assert admin.put("/api/email-config?scope=system", json=_config(2525, host="smtp.example.com")).status_code == 200
    response = viewer.get("/api/email-config?scope=system")
    assert response.status_code == 403
    assert "smtp.example.com" not in response.get_data(as_text=True)
    assert SMTP_USER not in response.get_data(as_text=True)
    assert admin.get("/api/email-config?scope=system").get_json()["host"] == "smtp.example.com"


@pytest.fixture
def two_servers():
    """The server the password was saved for, and a trap that records every password offered to it."""
    saved_check = RecordingPasswords(SMTP_USER, SMTP_PASSWORD)
    trap_check = RecordingPasswords(SMTP_USER, "anything")
    saved, saved_port = start_smtp(ScriptedHandler(), authenticator=saved_check, auth_require_tls=False)
    trap, trap_port = start_smtp(ScriptedHandler(), authenticator=trap_check, auth_require_tls=False)
    yield saved_port, trap_port, trap_check
    saved.stop()
    trap.stop()


@pytest.mark.parametrize("change", ["port", "host", "username"])
def test_changing_the_endpoint_without_the_password_clears_it(sqlite_url, tmp_path, two_servers, change):
    saved_port, trap_port, trap_check = two_servers
    harness = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="127.0.0.0/8")
    client = harness.create_user("ana@example.com")
    assert client.put("/api/email-config", json=_config(saved_port)).get_json()["has_password"] is True

    moved = _config(trap_port if change == "port" else saved_port)
    if change == "host":
        moved = _config(trap_port, host="localhost")
    if change == "username":
        moved["username"] = "someone-else@example.com"
    del moved["password"]
    updated = client.put("/api/email-config", json=moved)
    tested = client.post("/api/email-config/test", json={}).get_json()

    assert updated.status_code == 200 and updated.get_json()["has_password"] is False
    assert SMTP_PASSWORD.encode() not in trap_check.offered
    assert tested["ok"] is False


def test_keeping_the_endpoint_keeps_the_password(sqlite_url, tmp_path, two_servers):
    saved_port, _, _ = two_servers
    harness = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="127.0.0.0/8")
    client = harness.create_user("ana@example.com")
    client.put("/api/email-config", json=_config(saved_port))
    renamed = _config(saved_port, from_name="Renamed", host="127.0.0.1")
    del renamed["password"]
    assert client.put("/api/email-config", json=renamed).get_json()["has_password"] is True
    assert client.post("/api/email-config/test", json={}).get_json()["ok"] is True


def test_testing_another_port_never_offers_the_saved_password(sqlite_url, tmp_path, two_servers):
    saved_port, trap_port, trap_check = two_servers
    harness = build_harness(sqlite_url, tmp_path, BIAPP_OUTBOUND_ALLOW="127.0.0.0/8")
    client = harness.create_user("ana@example.com")
    client.put("/api/email-config", json=_config(saved_port))
    probe = _config(trap_port)
    del probe["password"]
    client.post("/api/email-config/test", json=probe)
    assert SMTP_PASSWORD.encode() not in trap_check.offered
