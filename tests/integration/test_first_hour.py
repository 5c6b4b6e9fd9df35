"""Real `biapp` processes as a new user or operator first starts them: the API server's connections and
control socket, and the standalone's port check."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from shared.db.migrate import upgrade
from tests.support import ROOT, Process, base_env, free_port, wait_until

BIAPP = str(Path(sys.executable).with_name("biapp"))


@pytest.fixture
def api_env(tmp_path) -> dict[str, str]:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(database)
    home = tmp_path / "home"
    home.mkdir()
    # gunicorn's default control socket lives under $XDG_RUNTIME_DIR, else $HOME/.gunicorn.
    return base_env(BIAPP_DATABASE_URL=database, HOME=str(home), XDG_RUNTIME_DIR="")


def _start_api(env: dict[str, str], tmp_path: Path, name: str) -> tuple[Process, int]:
    port = free_port()
    args = ["api", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"]
    process = Process(args, env=env, cwd=tmp_path, log=tmp_path / f"{name}.log")
    wait_until(lambda: _healthy(port), timeout=30, what=f"biapp api ({name}) to answer")
    return process, port


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_api_keeps_an_idle_connection_open_and_two_instances_share_no_control_socket(api_env, tmp_path):
    first, port = _start_api(api_env, tmp_path, "first")
    second = None
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() is not None
        opened = connection.sock
        time.sleep(3)  # longer than gunicorn's 2 s default, which a client polling every 2 s runs into

        connection.request("GET", "/healthz")  # "Remote end closed connection without response" before
        answer = connection.getresponse()

        assert answer.status == 200 and connection.sock is opened, "the same connection served both requests"
        connection.close()

        second, second_port = _start_api(api_env, tmp_path, "second")
        assert _healthy(port) and _healthy(second_port)
        assert not (Path(api_env["HOME"]) / ".gunicorn").exists(), "no control socket shared by every instance"
        assert "control socket" not in first.output().lower() + second.output().lower()
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()


def test_standalone_on_a_busy_port_says_so_in_one_line_and_exits_2_before_creating_anything(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        data_dir = tmp_path / "var"

        result = subprocess.run(
            [BIAPP, "standalone", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
            env=base_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"port {port}" in line and "already in use" in line and "--port" in line
    assert not data_dir.exists(), "nothing seeded, no keys or database written"


def test_make_run_passes_port_to_the_standalone():
    result = subprocess.run(
        ["make", "-n", "run", "PORT=8080"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "biapp standalone --demo --port 8080" in result.stdout
