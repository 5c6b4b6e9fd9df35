"""The web console in a real browser: Debian's Chromium driven by Playwright against `biapp standalone`.

An admin builds a report from nothing (data source, catalog entity, semantic query), sees its next runs
and its message previewed, runs it, watches it succeed, downloads the emailed file from the history and
pauses it; a viewer finds no admin page. Every page visited is scanned with axe-core (bundled by
axe-playwright-python) and must have no serious or critical violation; the Content-Security-Policy must
block nothing the console does.

Chromium comes from the system (`apt-get install chromium`, scripts/ensure_system_packages.sh): no
browser is ever downloaded. Without it, or without Playwright, these tests skip (and fail under CI).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import Process, base_env, free_port, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("BIAPP_CHROMIUM", "/usr/bin/chromium")
ADMIN, ADMIN_PASSWORD = "admin@example.com", "console admin password"
VIEWER, VIEWER_PASSWORD = "vera@example.com", "console viewer password"
BERLIN = "Europe/Berlin"


def _require(what: str, present: bool) -> None:
    if not present:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is missing")
        pytest.skip(f"{what} is missing")


try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install both
    sync_playwright = None


def _shop(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table orders (id integer primary key, region text, ordered_on date, amount numeric)")
        conn.executemany(
            "insert into orders (region, ordered_on, amount) values (?, ?, ?)",
            [
                (region, f"2026-0{1 + i % 9}-1{i % 10}", 10 + i * 2.5)
                for i, region in enumerate(["EMEA", "AMER", "APAC"] * 20)
            ],
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require("Playwright (pip install -e '.[dev]')", sync_playwright is not None)
    _require(f"Chromium at {CHROMIUM} (apt-get install chromium)", Path(CHROMIUM).exists())
    root = tmp_path_factory.mktemp("console")
    data = root / "var"
    (data / "sqlite").mkdir(parents=True)
    _shop(data / "sqlite" / "shop.db")
    env = base_env(BIAPP_DATABASE_URL=f"sqlite:///{data / 'biapp.db'}", BIAPP_SQLITE_ROOT=str(data / "sqlite"))
    biapp = str(Path(sys.executable).with_name("biapp"))
    full_env = {**os.environ, **env, "BIAPP_ADMIN_PASSWORD": ADMIN_PASSWORD}
    subprocess.run([biapp, "db", "upgrade"], env=full_env, check=True, capture_output=True)
    subprocess.run([biapp, "users", "create-admin", "--email", ADMIN], env=full_env, check=True, capture_output=True)
    port = free_port()
    process = Process(
        ["standalone", "--port", str(port), "--data-dir", str(data)], env=env, cwd=root, log=root / "standalone.log"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(f"{base}/readyz"), timeout=60, what="standalone to be ready")
        token = requests.post(
            f"{base}/api/auth/login", json={"email": ADMIN, "password": ADMIN_PASSWORD}, timeout=10
        ).json()["access_token"]
        viewer = requests.post(
            f"{base}/api/users",
            json={"email": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert viewer.status_code == 201, viewer.text
        yield {"base": base, "data": data, "token": token, "process": process}
    finally:
        process.stop()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def browser(server):
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


class Console:
    """One signed-in browser tab; every page it visits is scanned by axe-core."""

    def __init__(self, browser, base: str, width: int = 1280):
        self.context = browser.new_context(
            viewport={"width": width, "height": 900}, timezone_id=BERLIN, locale="en-GB", accept_downloads=True
        )
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.base = base
        self.problems: list[str] = []
        self.scanned: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.problems.append(f"CSP: {text}")
        elif message.type == "error" and not text.startswith("Failed to load resource"):  # answers like 401, 422
            self.problems.append(f"console error: {text}")

    def go(self, route: str, heading: str | re.Pattern) -> None:
        self.page.goto(f"{self.base}/#{route}")
        self.expect_heading(heading)

    def expect_heading(self, heading) -> None:
        expect(self.page.get_by_role("heading", level=1)).to_have_text(heading)

    def scan(self, name: str) -> None:
        """No serious or critical axe-core violation on the page as it is now."""
        self.page.wait_for_load_state("networkidle")
        found = Axe().run(self.page).response["violations"]
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}" for v in bad
        )
        self.scanned.append(name)

    def sign_in(self, email: str, password: str) -> None:
        self.page.goto(f"{self.base}/")
        self.expect_heading("Sign in to BIApp Reports")
        self.scan("sign in")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.expect_heading("Reports")

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems


def test_an_admin_builds_runs_downloads_and_pauses_a_report(server, browser):
    console = Console(browser, server["base"])
    page = console.page
    console.sign_in(ADMIN, ADMIN_PASSWORD)
    assert not page.context.cookies() or all(
        c["httpOnly"] for c in page.context.cookies() if c["name"] == "biapp_session"
    )
    assert page.evaluate("() => document.cookie").count("biapp_session") == 0  # the token is out of the page's reach
    console.scan("reports (empty)")

    # A data source, tested.
    console.go("/data-sources/new", "New data source")
    page.get_by_label("Name", exact=True).fill("Shop")
    page.get_by_label("Kind").select_option("sqlite")
    page.get_by_label("File").fill("shop.db")
    page.get_by_role("button", name="Create data source").click()
    console.expect_heading("Shop")
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text(re.compile(r"Connected in \d+ ms"))).to_be_visible()
    console.scan("data source")

    # A catalog entity over its table, its fields filled from the table's columns.
    console.go("/catalog/new", "New entity")
    page.get_by_label("Name", exact=True).fill("Orders")
    page.get_by_label("Data source", exact=True).select_option(label="Shop (sqlite)")
    page.get_by_label("Table").fill("orders")
    page.get_by_role("button", name="Fill from the table's columns").click()
    expect(page.get_by_text(re.compile("Added the table's 4 columns"))).to_be_visible()
    page.get_by_role("button", name="Create entity").click()
    console.expect_heading("Orders")
    console.scan("catalog entity")

    # A semantic query built from pickers, previewed.
    console.go("/queries/new", "New saved query")
    page.get_by_label("Name", exact=True).fill("Revenue by region")
    page.get_by_label("Entity").select_option(label="Orders")
    page.get_by_role("checkbox", name="region").check()
    page.get_by_role("checkbox", name="amount").check()
    page.get_by_role("button", name="Create query").click()
    console.expect_heading("Revenue by region")
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("table", name="Preview of the query's rows")
    expect(preview.get_by_role("row")).to_have_count(4)  # the header and three regions
    expect(preview).to_contain_text("EMEA")
    console.scan("saved query with preview")

    # A report, with its next runs previewed while the schedule is edited.
    console.go("/reports/new", "New report")
    page.get_by_label("Name", exact=True).fill("Weekly revenue")
    page.get_by_label("Saved query", exact=True).select_option(label="Revenue by region")
    page.get_by_label("Frequency").select_option("weekly")
    page.get_by_role("checkbox", name="Monday").uncheck()
    page.get_by_role("checkbox", name="Tuesday").check()
    page.get_by_label("Time of day").fill("07:30")
    page.get_by_label("Time zone").select_option(BERLIN)
    upcoming = page.locator(".preview .next-runs li")
    expect(upcoming).to_have_count(10)
    expect(upcoming.first).to_contain_text("Tue")
    expect(upcoming.first).to_contain_text("07:30")
    page.get_by_label("To", exact=True).fill("team@example.com")
    page.get_by_role("checkbox", name="CSV", exact=True).check()
    page.get_by_label("Subject").fill("Revenue {{ dat }}")
    expect(page.get_by_label("Subject")).to_have_attribute("aria-invalid", "true")  # marked as a save would
    expect(page.locator(".field-error:visible")).to_contain_text("'dat' is undefined")
    page.get_by_label("Subject").fill("Revenue {{date}}")
    expect(page.get_by_label("Subject")).not_to_have_attribute("aria-invalid", "true")
    page.get_by_label("Text above the data").fill("Rows: <b>{{ row_count }}</b><script>no()</script>")
    message = page.get_by_role("region", name="Preview of the message")  # rendered by the API, sample values
    expect(message.locator(".preview-subject")).to_have_text(re.compile(r"^Revenue \d{4}-\d{2}-\d{2}$"))
    expect(message.locator(".preview-body")).to_have_text("Rows: 1234")
    expect(message.locator(".preview-body b")).to_have_count(1)
    console.scan("report editor")
    page.get_by_role("button", name="Create report").click()
    console.expect_heading("Weekly revenue")
    expect(page.locator("ol.next-runs li")).to_have_count(10)
    console.scan("report")

    # Run now; the history shows it reach success; its file downloads from the run's page.
    page.get_by_role("button", name="Run now").click()
    history = page.get_by_role("table", name="Runs of this report")
    expect(history.get_by_text("Success")).to_be_visible(timeout=45_000)
    history.get_by_role("link").first.click()
    console.expect_heading("Run of “Weekly revenue”")
    expect(page.get_by_role("table", name="Deliveries")).to_contain_text("team@example.com")
    expect(page.get_by_role("table", name="Deliveries").get_by_text("Sent")).to_be_visible()
    console.scan("run")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"Download .*\.xlsx")).click()
    assert download.value.suggested_filename.endswith(".xlsx")
    assert Path(download.value.path()).read_bytes()[:2] == b"PK"  # a real workbook (a zip)
    assert list((server["data"] / "outbox").glob("*.eml")), "the email itself was sent"

    # Pause it.
    page.get_by_role("link", name="← Weekly revenue").click()
    console.expect_heading("Weekly revenue")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    reports = requests.get(
        f"{server['base']}/api/scheduled-reports", headers={"Authorization": f"Bearer {server['token']}"}, timeout=10
    ).json()["items"]
    assert [(r["name"], r["is_active"]) for r in reports] == [("Weekly revenue", False)]

    # Every other page, for the accessibility scan.
    for route, heading in [
        ("/reports", "Reports"),
        ("/alerts", "Alerts"),
        ("/alerts/new", "New alert"),
        ("/queries", "Saved queries"),
        ("/dashboards", "Dashboards"),
        ("/dashboards/new", "New dashboard"),
        ("/catalog", "Catalog"),
        ("/data-sources", "Data sources"),
        ("/users", "Users"),
        ("/users/new", "New user"),
        ("/email", "Email settings"),
        ("/account", "Your account"),
    ]:
        console.go(route, heading)
        console.scan(route)
    console.close()


def test_a_viewer_sees_no_admin_page_and_the_phone_layout_works(server, browser):
    console = Console(browser, server["base"], width=375)
    page = console.page
    console.sign_in(VIEWER, VIEWER_PASSWORD)
    page.get_by_role("button", name="Menu").click()
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Reports")).to_be_visible()
    for hidden in ("Data sources", "Users", "Catalog"):
        expect(navigation.get_by_role("link", name=hidden)).to_have_count(0)
    console.scan("viewer menu")
    for route in ("/users", "/data-sources", "/catalog/new"):
        console.go(route, "Not available")
    console.scan("not available")
    console.go("/reports", "Reports")
    expect(page.get_by_text("Weekly revenue")).to_have_count(0)  # the admin's report is not theirs
    console.scan("viewer reports")
    console.go("/queries/new", "New saved query")
    expect(page.get_by_role("radio", name="Raw SQL")).to_be_disabled()
    page.get_by_role("button", name="Create query").click()
    expect(page.locator(".form-error")).to_be_visible()  # the API's 422, shown next to the fields it names
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    console.scan("viewer query editor with errors")
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("button", name="Sign out").click()
    console.expect_heading("Sign in to BIApp Reports")
    assert requests.get(f"{server['base']}/api/auth/me", timeout=5).status_code == 401
    console.close()


def test_the_browser_needs_no_network_beyond_the_server(server, browser):
    """Every request the console makes goes to its own origin: it works with no internet access."""
    console = Console(browser, server["base"])
    origins = set()
    console.page.on("request", lambda request: origins.add(re.match(r"^[a-z]+://[^/]+", request.url).group(0)))
    console.sign_in(ADMIN, ADMIN_PASSWORD)
    console.go("/reports/new", "New report")
    console.page.wait_for_load_state("networkidle")
    assert origins == {server["base"]}
    console.close()
