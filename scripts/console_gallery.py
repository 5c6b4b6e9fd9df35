"""Pictures of the web console in docs/gallery/console-*.png, at desktop (1280 px) and phone (375 px) width.

Starts `biapp standalone --demo` in a temporary directory, runs the demo report once, and photographs the
main pages with Debian's Chromium through Playwright (no browser download). Run it by hand whenever the
console changes, then look at the pictures:

    .venv/bin/python scripts/console_gallery.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.demo import MAIN_REPORT  # noqa: E402

GALLERY = ROOT / "docs" / "gallery"
CHROMIUM = os.environ.get("BIAPP_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "gallery demo password"  # noqa: S105 (a throwaway demo server)
WIDTHS = {"desktop": 1280, "phone": 375}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(base: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the standalone server did not become ready")


def _sign_in(page, base: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reports")


def _shoot(page, name: str, width: str) -> None:
    page.wait_for_load_state("networkidle")
    page.mouse.move(0, 0)
    page.evaluate("() => { document.getElementById('status').hidden = true; }")  # no passing announcement
    path = GALLERY / f"console-{name}-{width}.png"
    page.screenshot(path=path, full_page=True)
    print(f"wrote {path.relative_to(ROOT)}")


def _open_report(page, base: str, name: str) -> str:
    page.goto(f"{base}/#/reports")
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    return page.url.split("#", 1)[1]


def photograph(base: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        for width_name, width in WIDTHS.items():
            context = browser.new_context(
                viewport={"width": width, "height": 900}, timezone_id="Europe/Berlin", locale="en-GB"
            )
            page = context.new_page()
            page.goto(f"{base}/")
            expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to BIApp Reports")
            _shoot(page, "signin", width_name)
            _sign_in(page, base)
            _shoot(page, "reports", width_name)

            route = _open_report(page, base, MAIN_REPORT)
            if width_name == "desktop":
                page.get_by_role("button", name="Run now").click()
                history = page.get_by_role("table", name="Runs of this report")
                expect(history.get_by_text("Success").first).to_be_visible(timeout=60_000)
            _shoot(page, "report", width_name)

            history = page.get_by_role("table", name="Runs of this report")
            history.get_by_role("link").first.click()
            expect(page.get_by_role("heading", level=1)).to_have_text(f"Run of “{MAIN_REPORT}”")
            expect(page.get_by_role("link", name=re.compile("Download")).first).to_be_visible()
            _shoot(page, "run", width_name)

            page.goto(f"{base}/#{route}/edit")
            expect(page.get_by_role("heading", level=1)).to_have_text(f"Edit “{MAIN_REPORT}”")
            # A schedule that meets the spring-forward gap: the 28th at 02:30 in Berlin (28 March 2027).
            page.get_by_label("Frequency").select_option("monthly")
            page.get_by_label("Day of the month").select_option("28")
            page.get_by_label("Time of day").fill("02:30")
            page.get_by_label("Time zone").select_option("Europe/Berlin")
            expect(page.locator(".next-runs li.dst").first).to_be_visible()
            _shoot(page, "report-editor", width_name)

            page.goto(f"{base}/#/queries")
            page.get_by_role("table", name="Saved queries").get_by_role("link").first.click()
            page.get_by_role("button", name="Preview").click()
            expect(page.get_by_role("table", name="Preview of the query's rows")).to_be_visible()
            _shoot(page, "query", width_name)

            page.goto(f"{base}/#/alerts/new")
            expect(page.get_by_role("heading", level=1)).to_have_text("New alert")
            expect(page.locator(".preview .next-runs li")).to_have_count(10)
            _shoot(page, "alert-editor", width_name)
            context.close()
        browser.close()


def main() -> int:
    GALLERY.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="biapp-console-gallery-") as temp:
        port = _free_port()
        env = {**os.environ, "BIAPP_ADMIN_PASSWORD": PASSWORD, "BIAPP_LOG_FORMAT": "text", "BIAPP_LOG_LEVEL": "WARNING"}
        for key in [k for k in env if k.startswith("BIAPP_") and k not in ("BIAPP_ADMIN_PASSWORD", "BIAPP_LOG_FORMAT")]:
            if key != "BIAPP_LOG_LEVEL":
                env.pop(key)  # the standalone's own defaults, whatever this shell has set
        biapp = str(Path(sys.executable).with_name("biapp"))
        server = subprocess.Popen(
            [biapp, "standalone", "--demo", "--port", str(port), "--data-dir", str(Path(temp) / "var")],
            cwd=temp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base)
            photograph(base)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
