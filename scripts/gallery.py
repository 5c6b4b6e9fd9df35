"""`make gallery`: what recipients receive, as pictures, in docs/gallery/.

The demo's dashboard is sent twice through the real pipeline (renderer, then mailer over SMTP to a
local aiosmtpd sink): once as an English report from New York and once as the German report from
Berlin that the demo seeds. For each: the email as a browser shows it (headless Chromium, desktop
and phone width; its inline cid: charts become data: URIs), every PDF page (pdftoppm), and the
XLSX's sheets (LibreOffice prints the workbook to PDF, then pdftoppm). Regenerate it whenever an
output changes, and look at the pictures.
"""

from __future__ import annotations

import base64
import email
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from email.policy import default
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.demo import BERLIN_REPORT, seed_demo  # noqa: E402
from services.mailer.deliver import deliver_execution  # noqa: E402
from services.mailer.transport import SmtplibTransport  # noqa: E402
from services.renderer.render import render_execution  # noqa: E402
from shared import executions  # noqa: E402
from shared.clock import SystemClock  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.context import build_context  # noqa: E402
from shared.db import make_engine, make_session_factory, transaction  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.messaging import RecordingPublisher  # noqa: E402
from shared.models import Artifact, ReportExecution, ScheduledReport  # noqa: E402
from shared.reports import apply_changes  # noqa: E402

OUT = ROOT / "docs" / "gallery"
WIDTHS = {"desktop": 900, "phone": 390}


class Sink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        sys.exit(f"gallery: {name} is missing; run scripts/ensure_gallery_packages.sh")
    return found


def run_report(ctx, factory, report_id, sink: Sink) -> tuple[bytes, dict[str, bytes]]:
    """One manual run through the renderer and the mailer; the email and the files."""
    with transaction(factory) as session:
        report = session.get(ScheduledReport, report_id)
        execution = executions.create_execution(session, report, trigger="manual", now=ctx.clock.now())
        execution_id = str(execution.id)
    render_execution(ctx, execution_id)
    before = len(sink.messages)
    deliver_execution(ctx, SmtplibTransport(), execution_id)
    with transaction(factory) as session:
        execution = session.get(ReportExecution, uuid.UUID(execution_id))
        if execution.status != "success":
            sys.exit(f"gallery: the run ended {execution.status}: {execution.error}")
        files = {
            a.format: b"".join(ctx.store.open(session, a))
            for a in session.execute(sa.select(Artifact).where(Artifact.execution_id == execution.id)).scalars()
        }
    return sink.messages[before], files


def email_html(raw: bytes) -> str:
    """The HTML part with its cid: images inlined as data: URIs, as a mail client shows it."""
    message = email.message_from_bytes(raw, policy=default)
    html, images = "", {}
    for part in message.walk():
        if part.get_content_type() == "text/html":
            html = part.get_content()
        elif part.get("Content-ID"):
            cid = part["Content-ID"].strip("<>")
            images[cid] = f"data:{part.get_content_type()};base64," + base64.b64encode(part.get_content()).decode()
    return re.sub(r"cid:([^\"')\s]+)", lambda m: images.get(m.group(1), m.group(0)), html)


def screenshot(html_path: Path, png: Path, width: int) -> None:
    subprocess.run(
        [
            tool("chromium"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={width},9000",
            html_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    trim(png)


def trim(png: Path) -> None:
    """Cut the white space below the email (Chromium shoots the whole window)."""
    from PIL import Image, ImageChops

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, rgb.getpixel((rgb.width - 1, rgb.height - 1))))
        bounds = box.getbbox()
        if bounds:
            rgb.crop((0, 0, rgb.width, min(rgb.height, bounds[3] + 24))).save(png)


def pdf_pages(pdf: Path, prefix: Path, *, first: int = 1, last: int = 4) -> None:
    subprocess.run(
        [tool("pdftoppm"), "-png", "-r", "60", "-f", str(first), "-l", str(last), str(pdf), str(prefix)],
        check=True,
        timeout=120,
    )


def xlsx_pages(xlsx: Path, prefix: Path, work: Path) -> None:
    subprocess.run(
        [tool("soffice"), "--headless", "--convert-to", "pdf", "--outdir", str(work), str(xlsx)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pdf_pages(work / (xlsx.stem + ".pdf"), prefix, last=6)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="biapp-gallery-"))
    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    settings = load_settings(
        {
            "BIAPP_DATABASE_URL": f"sqlite:///{work / 'app.db'}",
            "BIAPP_BROKER_URL": "memory://",
            "BIAPP_SECRET_KEY": secrets.token_urlsafe(32),
            "BIAPP_FERNET_KEYS": Fernet.generate_key().decode(),
            "BIAPP_SQLITE_ROOT": str(work),
            "BIAPP_PUBLIC_URL": "https://reports.example.com",
            "BIAPP_OUTBOUND_ALLOW": "127.0.0.0/8",
            "BIAPP_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "BIAPP_ORG_NAME": "Example Trading",
            "BIAPP_BRAND_COLOR": "#1f4e79",
        }
    )
    upgrade(settings.database_url)
    factory = make_session_factory(make_engine(settings.database_url))
    seed_demo(factory, settings, smtp_host="127.0.0.1", smtp_port=port, data_dir=work)
    ctx = build_context(settings, RecordingPublisher(), session_factory=factory, clock=SystemClock())
    with transaction(factory) as session:
        berlin = session.execute(sa.select(ScheduledReport).where(ScheduledReport.name == BERLIN_REPORT)).scalar_one()
        english = ScheduledReport(owner_id=berlin.owner_id, is_active=True)
        apply_changes(
            english,
            {
                "name": "Sales overview (New York)",
                "dashboard_id": berlin.dashboard_id,
                "schedule": {
                    "frequency": "weekly",
                    "time": "07:30",
                    "days_of_week": [0],
                    "timezone": "America/New_York",
                },
                "recipients": ["sales@example.com"],
                "cc": [],
                "formats": ["xlsx", "pdf", "csv"],
                "locale": "en-US",
                "subject": "Sales overview – {{date}}",
                "body": "<p>Good morning — the numbers of the last 90 days.</p>",
                "is_active": True,
            },
            ctx.clock.now(),
        )
        session.add(english)
        session.flush()
        reports = {"dashboard-en": english.id, "berlin-de": berlin.id}
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    for name, report_id in reports.items():
        raw, files = run_report(ctx, factory, report_id, sink)
        page = work / f"{name}-email.html"
        page.write_text(email_html(raw), encoding="utf-8")
        for label, width in WIDTHS.items():
            screenshot(page, OUT / f"{name}-email-{label}.png", width)
        (work / f"{name}.pdf").write_bytes(files["pdf"])
        pdf_pages(work / f"{name}.pdf", OUT / f"{name}-pdf")
        (work / f"{name}.xlsx").write_bytes(files["xlsx"])
        xlsx_pages(work / f"{name}.xlsx", OUT / f"{name}-xlsx", work)
    smtp.stop()
    shutil.rmtree(work, ignore_errors=True)
    print("gallery: " + ", ".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
