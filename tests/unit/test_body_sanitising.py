"""The user's body becomes safe HTML (an allow-list, via nh3) and readable plain text;
bidi controls never reach a subject or a file name."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from services.mailer.compose import (
    Attachment,
    MailContent,
    Preview,
    build_message,
    compose_body,
    render_subject,
    safe_filename,
    sanitise_body_html,
)
from services.renderer.render import base_filename
from shared.templates import template_context
from shared.text import BIDI_CONTROLS, strip_bidi_controls

RUN = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
RLO = "\u202e"


def _context(**overrides):
    context = template_context("Weekly revenue", RUN.astimezone(ZoneInfo("Europe/Berlin")), 1234, "Europe/Berlin")
    return {**context, **overrides}


def _body(template: str, **kwargs) -> tuple[str, str]:
    return compose_body(
        template,
        _context(),
        subject="S",
        preview=kwargs.get("preview"),
        attachments=kwargs.get("attachments", ()),
        links=kwargs.get("links", ()),
    )


def _user_part(html: str) -> str:
    """The sanitised user body inside the system's layout."""
    start = html.index("<div>") + len("<div>")
    return html[start : html.index("</div>\n", start)]


@pytest.mark.parametrize(
    ("template", "forbidden"),
    [
        ("<p>Hi</p><script>alert(1)</script>", ["<script", "alert(1)"]),
        ("<style>body{display:none}</style><p>Hi</p>", ["<style", "display:none"]),
        (
            '<form action="https://evil.example/steal"><input name="password"><button>Go</button></form>',
            ["<form", "<input", "<button", "evil.example"],
        ),
        ('<iframe src="https://evil.example/"></iframe><p>Hi</p>', ["<iframe", "evil.example"]),
        ('<img src="https://tracker.example/pixel.gif" width="1" height="1">', ["<img", "tracker.example"]),
        ('<a href="javascript:alert(1)">click</a>', ["javascript:", "href"]),
        ('<a href="JaVaScRiPt:alert(1)">click</a>', ["javascript", "href"]),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">click</a>', ["data:", "href"]),
        ('<a href="/relative/path">click</a>', ["href", "/relative"]),
        ('<p onclick="alert(1)" onmouseover="x()">Hi</p>', ["onclick", "onmouseover", "alert"]),
        ('<p style="background:url(https://tracker.example/a.png)">Hi</p>', ["style", "tracker.example"]),
        ('<table background="https://tracker.example/b.png"><tr><td>1</td></tr></table>', ["background", "tracker"]),
        ('<svg><image href="https://tracker.example/c.png"/></svg>', ["<svg", "<image", "tracker"]),
        (
            '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/y">',
            ["<object", "<embed", "evil"],
        ),
        (
            '<link rel="stylesheet" href="https://evil.example/s.css"><meta http-equiv="refresh" content="0">',
            ["<link", "<meta", "evil"],
        ),
        ('<base href="https://evil.example/"><p>Hi</p>', ["<base", "evil"]),
        ("<p>{{ '<script>alert(1)</script>'|safe }}</p>", ["<script", "alert(1)"]),
    ],
)
def test_dangerous_markup_is_removed_from_the_html_part(template, forbidden):
    _, html = _body(template)
    body = _user_part(html)
    for fragment in forbidden:
        assert fragment.lower() not in body.lower(), (fragment, body)


def test_allowed_markup_is_kept():
    template = (
        "<h1>Title</h1><h2>Sub</h2><h3>Three</h3><h4>Four</h4>"
        "<p>Some <strong>bold</strong>, <em>emphasis</em>, <b>b</b> and <i>i</i>.<br>Next line</p>"
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"
        "<table><thead><tr><th>Region</th></tr></thead><tbody><tr><td>EMEA</td></tr></tbody></table>"
        '<p><a href="https://example.com/report?id=1&amp;x=2">the report</a> or '
        '<a href="mailto:team@example.com">mail us</a></p>'
    )
    _, html = _body(template)
    body = _user_part(html)
    for fragment in (
        "<h1>Title</h1>",
        "<h2>Sub</h2>",
        "<h3>Three</h3>",
        "<h4>Four</h4>",
        "<strong>bold</strong>",
        "<em>emphasis</em>",
        "<br>",
        "<ul><li>one</li><li>two</li></ul>",
        "<ol><li>first</li></ol>",
        "<th>Region</th>",
        "<td>EMEA</td>",
        "<table>",
        "<tr>",
    ):
        assert fragment in body, (fragment, body)
    assert 'href="https://example.com/report?id=1&amp;x=2"' in body
    assert 'href="mailto:team@example.com"' in body
    assert body.count('rel="noopener noreferrer"') == 2


def test_sanitiser_is_an_explicit_allow_list():
    assert sanitise_body_html("<marquee>x</marquee><details><summary>s</summary>d</details>") == "xsd"


def test_variables_stay_escaped_inside_user_markup():
    _, html = compose_body(
        "<p>Hello {{ report_name }}</p>",
        _context(report_name='<img src="https://t.example/p.gif">'),
        subject="S",
        preview=None,
        attachments=(),
        links=(),
    )
    body = _user_part(html)
    assert "<img" not in body and "&lt;img" in body


def test_the_plain_text_part_of_an_html_body_reads_as_text():
    template = (
        "<h2>Revenue {{ date }}</h2><p>Hello <strong>team</strong>,</p>"
        '<p>See the <a href="https://example.com/r">dashboard</a>.<br>Thanks</p>'
        "<ul><li>one</li><li>two</li></ul><script>alert(1)</script>"
    )
    text, _ = _body(template)
    assert "<" not in text and ">" not in text.replace("->", "")
    assert "alert" not in text
    assert "Revenue 2026-03-29" in text
    assert "Hello team," in text
    assert "dashboard (https://example.com/r)" in text
    assert "\nThanks" in text
    assert "- one\n- two" in text


def test_a_plain_text_body_keeps_its_lines_and_escapes_in_html():
    text, html = _body("Line one\nLine 3 < 4 & {{ row_count }} {{ '<b>' }}")
    assert text.startswith("Line one\nLine 3 < 4 & 1234 <b>")
    assert "Line one<br>\nLine 3 &lt; 4 &amp; 1234 &lt;b&gt;" in _user_part(html)


def test_the_systems_own_html_is_outside_the_sanitiser():
    preview = Preview(columns=["region"], rows=[["EMEA"]], total_rows=1)
    _, html = _body("<p>Hi</p>", preview=preview, attachments=(Attachment("r.csv", "text/csv", b"a"),))
    assert '<table style="border-collapse: collapse; font-size: 13px;">' in html  # layout styles kept
    assert "First 1 of 1 rows" in html and "Attached: r.csv." in html


# --- bidi controls ------------------------------------------------------------------------


def test_strip_bidi_controls_removes_every_override_isolate_and_mark():
    controls = "".join(BIDI_CONTROLS)
    assert {hex(ord(c)) for c in controls} == {
        *(hex(c) for c in range(0x202A, 0x202F)),
        *(hex(c) for c in range(0x2066, 0x206A)),
        "0x200e",
        "0x200f",
        "0x61c",
    }
    assert strip_bidi_controls(f"a{controls}b") == "ab"
    assert strip_bidi_controls("Umsätze März עברית") == "Umsätze März עברית"


def test_a_subject_with_a_bidi_override_is_sent_without_it():
    subject = render_subject("Invoice " + RLO + "fdp.exe {{ date }}", _context(), test=False)
    assert RLO not in subject and subject == "Invoice fdp.exe 2026-03-29"
    injected = render_subject("{{ report_name }}", _context(report_name=f"R{RLO}\u2066x\u2069\u200f"), test=True)
    assert injected == "[TEST] Rx"
    message = build_message(
        MailContent(subject, "t", None),
        sender="r@example.com",
        sender_name=f"Reports{RLO}",
        recipient="a@example.com",
        reply_to=None,
        now=RUN,
        message_id="<x@example.com>",
    )
    reparsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert RLO not in str(reparsed["Subject"]) and RLO not in str(reparsed["From"])


def test_an_alert_subject_is_sent_without_bidi_controls():
    from services.mailer.alert_mail import content_for

    alert = SimpleNamespace(
        id="a1", name=f"CPU{RLO}gnp.exe", condition={"kind": "row_count", "op": "gt", "value": 1}, timezone="UTC"
    )
    event = SimpleNamespace(
        notify_reason="triggered", evaluated_at=RUN, observed=5, error=None, state="triggered", message="5 > 1"
    )
    ctx = SimpleNamespace(
        clock=SimpleNamespace(now=lambda: RUN), settings=SimpleNamespace(public_url="https://bi.example.com")
    )
    content = content_for(ctx, alert, event)
    assert RLO not in content.subject and "CPUgnp.exe" in content.subject


def test_artifact_and_attachment_file_names_have_no_bidi_controls():
    run_local = datetime(2026, 3, 29, 11, 0)
    name = base_filename(f"Report{RLO}xslx.exe", run_local)
    assert not set(name) & set(BIDI_CONTROLS)
    assert name.startswith("report")
    assert safe_filename(f"invoice{RLO}fdp.exe") == "invoicefdp.exe"
    assert safe_filename(f"Umsätze{RLO} März.xlsx") == "Umsätze März.xlsx"
