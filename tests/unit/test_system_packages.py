"""scripts/ensure_system_packages.sh against stand-in commands: what it installs, and that it waits for apt's lock."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "ensure_system_packages.sh"
EVERY_LIBRARY = ("libpango-1.0.so.0", "libpangoft2-1.0.so.0", "libharfbuzz-subset.so.0")


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def run_script(tmp_path: Path, *, libraries=EVERY_LIBRARY, chromium=True, uid=0) -> tuple[int, str, list[str]]:
    """Run the script with PATH holding only stand-ins; returns (status, stderr, apt-get calls)."""
    bin_dir, apt_log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    for tool in ("grep", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    listing = "".join(f"\\t{lib} (libc6,x86-64) => /lib/{lib}\\n" for lib in libraries)
    _stub(bin_dir, "ldconfig", f'printf "{listing}"')
    _stub(bin_dir, "fc-list", "exit 0")  # every font family is there
    _stub(bin_dir, "fc-cache", "exit 0")
    _stub(bin_dir, "dpkg", "exit 1")
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "apt-get", f'echo "$*" >> {apt_log}')
    if chromium:
        _stub(bin_dir, "chromium", "exit 0")
    result = subprocess.run(
        ["/bin/bash", str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30
    )
    calls = apt_log.read_text().splitlines() if apt_log.exists() else []
    return result.returncode, result.stderr, calls


def test_with_everything_present_no_apt_is_called(tmp_path):
    assert run_script(tmp_path) == (0, "", [])


def test_the_harfbuzz_subsetter_and_chromium_are_installed_waiting_for_the_apt_lock(tmp_path):
    status, _, calls = run_script(tmp_path, libraries=EVERY_LIBRARY[:2], chromium=False)

    assert status == 0
    update, install = calls
    assert update.startswith("-o DPkg::Lock::Timeout=600 update")
    assert install.startswith("-o DPkg::Lock::Timeout=600 install")
    assert set(install.split()) >= {"libharfbuzz-subset0", "chromium"}
    assert "libpango-1.0-0" not in install.split(), "only what is missing"


def test_without_root_it_names_what_is_missing_and_fails(tmp_path):
    status, stderr, calls = run_script(tmp_path, chromium=False, uid=1000)
    assert status == 1 and "chromium" in stderr and calls == []
