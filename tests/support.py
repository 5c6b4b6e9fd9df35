"""Test helpers shared by every tier: settings, waiting, processes, a tiny API client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from shared.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
FERNET_KEY = Fernet.generate_key().decode()
SECRET_KEY = "test-secret-key-" + "x" * 32


def base_env(**overrides: str) -> dict[str, str]:
    env = {
        "BIAPP_DATABASE_URL": "sqlite:///:memory:",
        "BIAPP_BROKER_URL": "memory://",
        "BIAPP_SECRET_KEY": SECRET_KEY,
        "BIAPP_FERNET_KEYS": FERNET_KEY,
        "BIAPP_LOG_FORMAT": "text",
        "BIAPP_LOGIN_RATE_LIMIT": "1000 per minute",
        "BIAPP_LOGIN_ADDRESS_RATE_LIMIT": "1000 per minute",
        # The tests' SMTP servers listen on loopback, as an operator's local relay would; the outbound
        # policy's own tests (test_email_config_boundaries.py) set this back to the default, empty.
        "BIAPP_OUTBOUND_ALLOW": "127.0.0.0/8,[::1]",
        "BIAPP_RENDER_MAX_RETRIES": "2",
        "BIAPP_MAX_BACKOFF_S": "2",
    }
    env.update(overrides)
    return env


def make_settings(**overrides: str) -> Settings:
    return load_settings(base_env(**overrides))


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A `biapp …` subprocess started exactly as an operator would, with its output kept."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None = None, log: Path | None = None):
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log
        self._log = open(log, "wb") if log else subprocess.DEVNULL
        biapp = str(Path(sys.executable).with_name("biapp"))
        self.proc = subprocess.Popen(
            [biapp, *args],
            env=full_env,
            cwd=cwd or ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode


class ApiClient:
    """A tiny JSON client over Flask's test client, logged in as one user."""

    def __init__(self, flask_client, token: str | None = None):
        self.client = flask_client
        self.token = token

    def _headers(self, headers: dict | None) -> dict:
        merged = dict(headers or {})
        if self.token:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        return merged

    def request(self, method: str, path: str, json=None, headers: dict | None = None, **kwargs):
        return self.client.open(path, method=method, json=json, headers=self._headers(headers), **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def login(self, email: str, password: str) -> ApiClient:
        response = self.client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return ApiClient(self.client, response.get_json()["access_token"])
