"""The report email: its MIME layout, every section with charts and true row counts, links, footer,
per-recipient unsubscribe, branding and four languages - built through content.report_email with
small fakes for the store, the clock and the run, and real chart rendering."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from services.mailer import content, report_mail
from services.mailer.branding import Branding, contrast, image_size
from services.mailer.compose import UNSUBSCRIBE_URL, MailContent, PreparedMail, Unsubscribe, render_user_body
from services.mailer.notification import REPORT_DELIVERED, Notification, Section
from shared import charts, unsubscribe
from shared.clock import FixedClock
from shared.config import ConfigError
from shared.i18n import LOCALE_DIR
from shared.query.columns import ColumnInfo
from tests.support import make_settings

RUN = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
PUBLIC = "https://reports.example.com"
MAILER = Path(report_mail.__file__).parent
CSV = b"region,revenue\r\nEMEA,1200.50\r\nAPAC,990\r\n"
PDF = b"%PDF-1.7 fake" * 10
LOGO_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000500000002808060000007b0b6b2f"
    "0000000d49444154789c636000010000050001a5f645400000000049454e44ae426082"
)  # an 80 x 40 PNG: its header is all the layout reads


def _revenue_section(locale: str = "de-DE") -> dict:
    columns = [ColumnInfo("region", "string", "Region"), ColumnInfo("revenue", "decimal", "Umsatz", "currency:EUR")]
    raw = [(f"Region {n}", 1000 + n * 10.5) for n in range(79)]
    request = charts.ChartRequest("bar", "Umsatz nach Region", columns, raw[:8], locale=locale)
    return {
        "title": "Umsatz nach Region",
        "row_count": 79,
        "truncated": False,
        "columns": ["Region", "Umsatz"],
        "align": ["left", "right"],
        "rows": [[region, f"{value:,.2f} €".translate(str.maketrans(",.", ".,"))] for region, value in raw[:20]],
        "charts": charts.build_specs(request),
        "chart_alt": charts.alt_text(request),
        "filters": ["Region: EMEA, APAC"],
    }


def _orders_section() -> dict:
    columns = [ColumnInfo("day", "date", "Tag"), ColumnInfo("orders", "integer", "Bestellungen", "integer")]
    raw = [(date(2026, 2, 1) + timedelta(days=n), 40 + n) for n in range(20)]
    request = charts.ChartRequest("line", "Bestellungen pro Tag", columns, raw, locale="de-DE")
    return {
        "title": "Bestellungen pro Tag",
        "row_count": 1000,
        "truncated": True,
        "columns": ["Tag", "Bestellungen"],
        "align": ["left", "right"],
        "rows": [[day.strftime("%d.%m.%Y"), str(orders)] for day, orders in raw],
        "charts": charts.build_specs(request),
        "chart_alt": charts.alt_text(request),
        "filters": [],
    }


class _Store:
    def open(self, session, artifact):
        return iter([artifact.data])


def _artifact(filename: str, fmt: str, content_type: str, data: bytes):
    return SimpleNamespace(
        id=uuid.uuid4(), filename=filename, format=fmt, content_type=content_type, size=len(data), data=data,
        expires_at=None,
    )  # fmt: skip


def _run(monkeypatch, *, locale="de-DE", trigger="schedule", body="Hello team, the numbers are below.", summary=None,
         settings=None, artifacts=None, preview=None):  # fmt: skip
    """content.report_email for a German dashboard with two sections, prepared as the mailer sends it."""
    settings = settings or make_settings(BIAPP_PUBLIC_URL=PUBLIC)
    ctx = SimpleNamespace(settings=settings, clock=FixedClock(RUN), store=_Store())
    if summary is None:
        summary = {"sections": [_revenue_section(locale), _orders_section()]}
    execution = SimpleNamespace(
        id=uuid.uuid4(), scheduled_for=RUN, started_at=RUN, rendered_at=RUN, row_count=1079, truncated=True,
        trigger=trigger, summary=summary,
    )  # fmt: skip
    report = SimpleNamespace(
        id=uuid.uuid4(), name="Wochenumsatz", timezone="Europe/Berlin", body=body, locale=locale,
        description=None, owner_id=uuid.uuid4(),
    )  # fmt: skip
    monkeypatch.setattr(content, "owner_name", lambda _report: "Ana <Analyst>")
    if artifacts is None:
        artifacts = [
            _artifact("wochenumsatz.csv", "csv", "text/csv; charset=utf-8", CSV),
            _artifact("wochenumsatz.pdf", "pdf", "application/pdf", PDF),
        ]
    subject = "[TEST] Wochenumsatz" if trigger == "test" else "Wochenumsatz"
    mail = content.report_email(ctx, None, execution, report, artifacts, preview, subject)
    prepared = PreparedMail(mail, sender="reports@example.com", sender_name="BIApp Reports", reply_to=None)
    return SimpleNamespace(report=report, mail=mail, prepared=prepared, settings=settings, artifacts=artifacts)


def _copy(run, address="ana@example.com", kind="to"):
    raw = run.prepared.for_recipient(address, kind=kind, now=RUN, message_id="<m1@example.com>")
    return message_from_bytes(raw, policy=policy.default)


def _parts(message):
    """(text, html) as a reader gets them, with plain newlines."""
    return tuple(message.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


@pytest.fixture(scope="module")
def german():
    """One German run shared by the read-only tests (charts take a moment to render)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _run(monkeypatch)


# --- MIME -----------------------------------------------------------------------------------


def test_the_message_is_mixed_related_alternative_with_inline_charts_and_attachments(german):
    message = _copy(german)
    assert message.get_content_type() == "multipart/mixed"
    related, *attachments = message.iter_parts()
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "multipart/alternative"
    alternative, *images = related.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert len(images) == 2 and {p.get_content_type() for p in images} == {"image/png"}
    html = alternative.get_body(("html",)).get_content()
    for image in images:
        assert image.get_content_disposition() == "inline"
        cid = image["Content-ID"].strip().strip("<>")
        assert f'src="cid:{cid}"' in html
        assert image_size(image.get_payload(decode=True))[0] > 0
    assert {a.get_filename() for a in attachments} == {"wochenumsatz.csv", "wochenumsatz.pdf"}


def test_charts_are_rendered_once_for_every_copy(german):
    first, second = _copy(german, "ana@example.com"), _copy(german, "bo@example.com", kind="cc")
    cids = [[p["Content-ID"] for p in m.walk() if p.get_content_type() == "image/png"] for m in (first, second)]
    assert cids[0] == cids[1] and len(german.mail.images) == 2


def test_copies_keep_their_privacy_rules_and_message_id(german):
    cc = _copy(german, "cy@example.com", kind="cc")
    assert str(cc["To"]) == "undisclosed-recipients:;" and cc["Cc"] == "cy@example.com"
    assert cc["Message-ID"] == "<m1@example.com>" and cc["Subject"] == "Wochenumsatz"
    raw = german.prepared.for_recipient("cy@example.com", kind="cc", now=RUN, message_id="<m1@example.com>")
    assert b"ana@example.com" not in raw


# --- content --------------------------------------------------------------------------------


def test_every_section_has_its_title_and_true_row_count_in_both_parts(german):
    text, html = _parts(_copy(german))
    for part in (text, html):
        assert "Umsatz nach Region" in part and "Bestellungen pro Tag" in part
        assert "Erste 20 von 79 Zeilen" in part
        assert "Erste 20 von 1.000 Zeilen" in part
    assert text.index("Umsatz nach Region") < text.index("Bestellungen pro Tag")


def test_numbers_are_right_aligned_in_both_parts(german):
    text, html = _parts(_copy(german))
    cell = re.search(r"<td[^>]*>1\.000,00 €</td>", html).group(0)
    assert 'align="right"' in cell and "text-align:right" in cell
    region = re.search(r"<td[^>]*>Region 0</td>", html).group(0)
    assert "text-align:right" not in region
    assert re.search(r"^Region 0  \| 1\.000,00 €$", text, re.M)
    assert re.search(r"^Region 10 \| 1\.105,00 €$", text, re.M)


def test_a_section_cut_at_the_row_limit_says_so(german):
    text, html = _parts(_copy(german))
    line = "Dieser Abschnitt wurde beim Zeilenlimit des Berichts von 1.000 Zeilen abgeschnitten"
    assert text.count(line) == 1 and html.count(line) == 1
    assert text.index(line) > text.index("Bestellungen pro Tag")


def test_charts_have_alt_text_and_explicit_size(german):
    _, html = _parts(_copy(german))
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 2
    for image in images:
        width, height = int(re.search(r'width="(\d+)"', image)[1]), int(re.search(r'height="(\d+)"', image)[1])
        assert 0 < width <= report_mail.CONTENT_WIDTH and height > 0
        assert re.search(r'alt="[^"]+chart of ', image)


def test_filters_are_listed_in_words(german):
    text, html = _parts(_copy(german))
    assert "Filter: Region: EMEA, APAC" in text
    assert "Region: EMEA, APAC" in html


def test_open_report_and_download_links_use_the_public_url(german):
    text, html = _parts(_copy(german))
    open_url = f"{PUBLIC}/#/reports/{german.report.id}"
    assert f"Bericht öffnen: {open_url}" in text and f'href="{open_url}"' in html
    links = re.findall(rf"{re.escape(PUBLIC)}/api/links/[\w.\-]+", text)
    assert len(links) == 2 and all(f'href="{link}"' in html for link in links)
    assert "Die Links funktionieren bis 5. März 2026, 08:00 CET ohne Anmeldung." in text


def test_the_footer_names_who_scheduled_it_escaped(german):
    text, html = _parts(_copy(german))
    assert "Geplant von Ana <Analyst>" in text
    assert "Geplant von Ana &lt;Analyst&gt;" in html and "<Analyst>" not in html


def test_the_run_time_is_a_long_date_in_the_reports_zone(german):
    text, html = _parts(_copy(german))
    assert "Stand: 2. März 2026, 08:00 CET" in text and "Stand: 2. März 2026, 08:00 CET" in html


def test_the_plain_text_part_has_no_html_and_writes_links_out(monkeypatch):
    run = _run(monkeypatch, body='<p>Hello <b>team</b>, see <a href="https://example.com/notes">the notes</a>.</p>')
    text, html = _parts(_copy(run))
    assert not re.search(r"</?[a-z][^>]*>", text) and "&lt;" not in text and "&amp;" not in text
    assert "Hello team, see the notes (https://example.com/notes)." in text
    assert "<b>team</b>" in html


def test_the_users_body_stays_as_written_under_the_header_before_the_sections(german):
    text, html = _parts(_copy(german))
    assert "Hello team, the numbers are below." in text  # English, in a German email
    assert text.index("Wochenumsatz") < text.index("Hello team") < text.index("Umsatz nach Region")
    assert html.index("<h1") < html.index("Hello team") < html.index("Umsatz nach Region")


def test_user_markup_is_still_sanitised_and_data_is_escaped(monkeypatch):
    summary = {"sections": [{**_revenue_section(), "title": "<script>alert(1)</script>", "charts": []}]}
    run = _run(
        monkeypatch, body="<p>Hi</p><script>alert(2)</script><img src='https://t.example/p.gif'>", summary=summary
    )
    _, html = _parts(_copy(run))
    assert "<script" not in html and "alert(2)" not in html and "t.example" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_css_is_inlined_and_only_media_queries_stay_in_the_style_block(german):
    _, html = _parts(_copy(german))
    assert re.search(r'<h1 class="title"[^>]* style="[^"]*font-size:24px', html)
    assert re.search(r'<td class="card font"[^>]* style="[^"]*background-color:#ffffff', html)
    styles = re.findall(r"<style>(.*?)</style>", re.sub(r"<!--.*?-->", "", html, flags=re.S), re.S)
    assert styles and all(s.strip().startswith("@media") for s in styles)
    assert 'lang="de-DE"' in html and 'name="viewport"' in html


def test_an_older_run_with_one_untitled_section_still_reads_well(monkeypatch):
    preview = SimpleNamespace(columns=["region", "revenue"], rows=[["EMEA", "1200.50"], ["APAC", "990"]], total_rows=2)
    run = _run(monkeypatch, locale="en-US", summary={}, preview=preview)
    text, html = _parts(_copy(run))
    assert "region | revenue" in text and "EMEA   | 1200.50" in text and "APAC   |     990" in text
    assert re.search(r"<td[^>]*text-align:right[^>]*>1200\.50</td>", html)
    assert "<h2" not in html  # the report's one section is not titled a second time
    assert "1,079 rows" in text and "cut at 1,079 rows" in text


def test_a_chart_that_cannot_be_rendered_is_left_out_and_its_table_stays():
    def broken(spec, *, scale):
        raise RuntimeError("no renderer")

    section = Section("Umsatz", 3, ("Region", "Umsatz"), (("EMEA", "1"),), ("left", "right"), ({"mark": "bar"},), "alt")
    email = report_mail.compose_report(_notification((section,)), render_user_body("", {}), subject="S", render=broken)
    assert email.images == () and "<img" not in email.html and "EMEA" in email.html


def _notification(sections, **overrides) -> Notification:
    values = dict(
        type=REPORT_DELIVERED, subject="S", headline="h", name="Weekly revenue", object_kind="report",
        object_id="r1", run_id="e1", status="rendered", timezone="Europe/Berlin", scheduled_for=RUN,
        sections=sections, open_url=f"{PUBLIC}/#/reports/r1", owner="Ana Analyst",
    )  # fmt: skip
    return Notification(**{**values, **overrides})


def test_an_empty_section_says_no_rows():
    section = Section("Returns", 0, ("id",), ())
    email = report_mail.compose_report(_notification((section,)), render_user_body("", {}), subject="S")
    assert "Returns\n-------\nNo rows" in email.text and "No rows" in email.html


# --- unsubscribe ----------------------------------------------------------------------------


def test_each_copy_carries_its_own_one_click_unsubscribe(german):
    copies = {address: _copy(german, address) for address in ("ana@example.com", "bo@example.com")}
    urls = {}
    for address, message in copies.items():
        header = message["List-Unsubscribe"]
        assert re.fullmatch(rf"<{re.escape(PUBLIC)}/api/unsubscribe/[\w.\-]+>", header)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = header.strip("<>")
        text, html = _parts(message)
        assert f"Diesen Bericht abbestellen: {url}" in text and f'href="{url}"' in html
        assert UNSUBSCRIBE_URL not in text and UNSUBSCRIBE_URL not in html
        urls[address] = url
    assert urls["ana@example.com"] != urls["bo@example.com"]
    token = urls["bo@example.com"].rsplit("/", 1)[1]
    assert unsubscribe.verify(german.settings, token) == (german.report.id, "bo@example.com")


def test_the_unsubscribe_header_is_one_unfolded_line(german):
    raw = german.prepared.for_recipient("ana@example.com", now=RUN, message_id="<m1@example.com>")
    (line,) = [line for line in raw.split(b"\r\n") if line.startswith(b"List-Unsubscribe:")]
    assert line.startswith(b"List-Unsubscribe: <https://") and line.endswith(b">")


def test_a_test_run_carries_no_unsubscribe(monkeypatch):
    run = _run(monkeypatch, trigger="test")
    message = _copy(run)
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    text, html = _parts(message)
    assert "abbestellen" not in text and "abbestellen" not in html and "unsubscribe" not in html
    assert "Testlauf" in text


@pytest.mark.parametrize("html", [f'<p>Hi <a href="{UNSUBSCRIBE_URL}">leave</a></p>', None])
def test_a_copy_without_images_or_files_also_gets_its_own_link(html):
    settings = make_settings(BIAPP_PUBLIC_URL=PUBLIC)
    mail = MailContent("S", f"Leave: {UNSUBSCRIBE_URL}\n", html, unsubscribe=Unsubscribe(settings, uuid.uuid4()))
    prepared = PreparedMail(mail, sender="reports@example.com", sender_name=None, reply_to=None)
    message = message_from_bytes(
        prepared.for_recipient("ana@example.com", now=RUN, message_id="<m@x>"), policy=policy.default
    )
    url = message["List-Unsubscribe"].strip("<>")
    assert message.get_body(("plain",)).get_content().strip() == f"Leave: {url}"
    if html:
        assert message.get_content_type() == "multipart/alternative"
        assert f'href="{url}"' in message.get_body(("html",)).get_content()


# --- languages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("fr-FR", ["Rapport planifié", "Les 20 premières lignes sur 79", "Ouvrir le rapport", "Planifié par"]),
        ("es-ES", ["Informe programado", "Primeras 20 de 79 filas", "Abrir el informe", "Programado por"]),
        ("en-US", ["Scheduled report", "First 20 of 79 rows", "Open report", "Scheduled by", "March 2, 2026"]),
    ],
)
def test_the_boilerplate_follows_the_reports_language(monkeypatch, locale, expected):
    summary = {"sections": [{**_revenue_section(locale), "charts": []}]}
    run = _run(monkeypatch, locale=locale, summary=summary)
    text, html = _parts(_copy(run))
    for phrase in expected:
        assert phrase in text and phrase in html, phrase
    assert "Hello team, the numbers are below." in text
    assert f'lang="{locale}"' in html


def test_french_puts_a_no_break_space_before_colons(monkeypatch):
    run = _run(monkeypatch, locale="fr-FR", summary={"sections": [{**_revenue_section("fr-FR"), "charts": []}]})
    text, _ = _parts(_copy(run))
    assert "Filtres\u00a0: Region" in text and "Ouvrir le rapport\u00a0: https://" in text


def _source_messages() -> set[str]:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    found = set()
    for method, path in (
        ("python", MAILER / "report_mail.py"),
        *(("jinja2", p) for p in (MAILER / "templates").iterdir()),
    ):
        for _, message, _, _ in extract_from_file(method, path, keywords=keywords):
            found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("lang", ["de", "fr", "es"])
def test_every_email_message_has_a_translation(lang):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "email.po").open("rb") as po:
        catalog = read_po(po, locale=lang)
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id and all(m.string)}
    missing = _source_messages() - translated
    assert not missing and not catalog.fuzzy


# --- branding -------------------------------------------------------------------------------


def test_organisation_name_colour_and_logo_appear(monkeypatch, tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(LOGO_PNG)
    settings = make_settings(
        BIAPP_PUBLIC_URL=PUBLIC, BIAPP_ORG_NAME="Acme GmbH", BIAPP_BRAND_COLOR="#FFD400", BIAPP_BRAND_LOGO=str(logo)
    )
    run = _run(monkeypatch, settings=settings, summary={"sections": [{**_revenue_section(), "charts": []}]})
    message = _copy(run)
    text, html = _parts(message)
    assert text.startswith("Acme GmbH\n")
    logo_part = next(p for p in message.walk() if p.get("Content-ID", "").strip().startswith("<logo."))
    assert logo_part.get_payload(decode=True) == LOGO_PNG
    image = re.search(
        rf'<img [^>]*src="cid:{re.escape(logo_part["Content-ID"].strip().strip("<>"))}"[^>]*>', html
    ).group(0)
    assert 'alt="Acme GmbH"' in image and 'width="80"' in image and 'height="40"' in image
    assert 'bgcolor="#ffd400"' in html
    button = re.search(r'<a class="button[^"]*"[^>]*>', html).group(0)
    assert "color:#000000" in button  # dark text on a light yellow accent


def test_brand_text_always_reaches_wcag_aa():
    for color in ("#ffd400", "#1f4e79", "#e30613", "#00a651", "#777777", "#ffffff", "#000000"):
        brand = Branding(color=color)
        assert contrast(brand.color, brand.text_color) >= 4.5, color
        assert contrast(brand.link_color, "#ffffff") >= 4.5, color


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BIAPP_BRAND_COLOR": "blue"}, "BIAPP_BRAND_COLOR must be a colour written #rrggbb, got 'blue'"),
        ({"BIAPP_BRAND_COLOR": "#12345"}, "BIAPP_BRAND_COLOR must be a colour written #rrggbb"),
        ({"BIAPP_BRAND_LOGO": "/nonexistent/logo.png"}, "BIAPP_BRAND_LOGO must name a readable PNG or JPEG file"),
    ],
)
def test_bad_branding_settings_stop_the_start_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        make_settings(**env)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_logo_must_be_a_small_png_or_jpeg(tmp_path):
    big, text = tmp_path / "big.png", tmp_path / "logo.svg"
    big.write_bytes(LOGO_PNG + b"\0" * 210_000)
    text.write_bytes(b"<svg/>")
    with pytest.raises(ConfigError, match="at most 200 KB"):
        make_settings(BIAPP_BRAND_LOGO=str(big))
    with pytest.raises(ConfigError, match="must be a PNG or JPEG file"):
        make_settings(BIAPP_BRAND_LOGO=str(text))
    jpeg = tmp_path / "logo.jpg"
    jpeg.write_bytes(bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffc0001108003c00a003012200021101031101"))
    settings = make_settings(BIAPP_BRAND_LOGO=str(jpeg))
    assert settings.brand_logo == jpeg.read_bytes()
    assert image_size(settings.brand_logo) == (160, 60)
    assert Branding.from_settings(settings).logo.subtype == "jpeg"
