"""`biapp standalone` keeps its data private: files 0600, folders 0700, whatever the umask or an older run left."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import requests

from services import standalone
from tests.support import Process, free_port, wait_until

PASSWORD = "demo password 123"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    found = {".": _mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = _mode(path)
    return found


def _not_private(root: Path) -> dict[str, str]:
    wrong = {}
    for name, mode in _modes(root).items():
        path = root / name
        expected = 0o700 if path.is_dir() else 0o600
        if mode != expected:
            wrong[name] = oct(mode)
    return wrong


def _write(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_secure_data_dir_makes_what_the_standalone_keeps_private(tmp_path):
    root = tmp_path / "var"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    for name in ("biapp.db", "biapp.db-wal", "biapp.db-shm", "secret_key", "fernet_key", "admin_password"):
        _write(root / name, "x", 0o644)
    _write(root / "outbox" / "20260101-000000-00001-a@example.com.eml", "Subject: hi\n\nbody", 0o644)
    _write(root / "sqlite" / "sales.db", "x", 0o664)
    _write(root / "sqlite" / "archive" / "old.db", "x", 0o644)
    _write(root / "artifacts" / "e1" / "a1", "report bytes", 0o644)
    for folder in ("outbox", "sqlite", "sqlite/archive", "artifacts", "artifacts/e1"):
        (root / folder).chmod(0o755)
    outside = _write(tmp_path / "elsewhere.txt", "not ours", 0o644)
    (root / "outbox" / "link.eml").symlink_to(outside)

    standalone.secure_data_dir(root, artifact_store=f"filesystem:{root / 'artifacts'}")

    modes = _modes(root)
    assert modes.pop("outbox/link.eml") == _mode(root / "outbox" / "link.eml")  # a link is not followed
    assert {name: oct(mode) for name, mode in modes.items() if mode not in (0o600, 0o700)} == {}
    assert all(mode == 0o700 for name, mode in modes.items() if (root / name).is_dir())
    assert _mode(outside) == 0o644


def test_secure_data_dir_leaves_the_operators_own_files_alone(tmp_path):
    root = tmp_path / "var"
    root.mkdir()
    script = _write(root / "backup.sh", "#!/bin/sh\n", 0o755)
    standalone.secure_data_dir(root, artifact_store="database")
    assert _mode(root) == 0o700
    assert _mode(script) == 0o755


def test_a_running_standalone_writes_nothing_others_can_read(tmp_path):
    port = free_port()
    data_dir = tmp_path / "var"
    # What an older version, started with a permissive umask, left behind.
    data_dir.mkdir()
    data_dir.chmod(0o755)
    _write(data_dir / "admin_password", PASSWORD, 0o644)
    _write(data_dir / "outbox" / "20250101-000000-00001-old@example.com.eml", "Subject: old\n\nold", 0o644)
    (data_dir / "outbox").chmod(0o755)

    with _umask(0o022):  # the child inherits this: the standalone must not rely on the caller's umask
        process = Process(
            ["standalone", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
            env={"BIAPP_ARTIFACT_STORE": f"filesystem:{data_dir / 'artifacts'}"},
            cwd=tmp_path,
            log=tmp_path / "standalone.log",
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{base}/readyz"), timeout=60, what="standalone to be ready")
        token = requests.post(
            f"{base}/api/auth/login", json={"email": "admin@example.com", "password": PASSWORD}, timeout=10
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        report = requests.get(f"{base}/api/scheduled-reports", headers=headers, timeout=10).json()["items"][0]
        run = requests.post(f"{base}/api/scheduled-reports/{report['id']}/run", headers=headers, timeout=10)
        assert run.status_code == 202
        outbox = data_dir / "outbox"
        wait_until(lambda: len(list(outbox.glob("*.eml"))) >= 2, timeout=60, what="the demo email in the outbox")
        wait_until(lambda: list((data_dir / "artifacts").rglob("*")), timeout=30, what="an artifact file")

        names = set(_modes(data_dir))
        assert {"biapp.db", "secret_key", "fernet_key", "admin_password", "outbox", "sqlite"} <= names
        assert any(name.startswith("artifacts/") for name in names)
        assert _not_private(data_dir) == {}, process.output()
    finally:
        assert process.stop() is not None
    assert _not_private(data_dir) == {}


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
