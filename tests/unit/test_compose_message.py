"""Message composition: templates in the sandbox, one-line subjects, escaped preview, safe file names."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest

from services.mailer.compose import (
    Attachment,
    MailContent,
    Preview,
    build_message,
    compose_body,
    render_subject,
    safe_filename,
)
from services.mailer.files import plan_files, read_preview
from shared.errors import PermanentError
from shared.templates import render_template, template_context

RUN = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)


def _context():
    from zoneinfo import ZoneInfo

    return template_context("Weekly revenue", RUN.astimezone(ZoneInfo("Europe/Berlin")), 1234, "Europe/Berlin")


def test_subject_supports_every_documented_variable():
    subject = render_subject(
        "{{report_name}} | {{date}} | {{run_time}} | {{row_count}} | {{timezone}}", _context(), test=False
    )
    assert subject == "Weekly revenue | 2026-03-29 | 2026-03-29 11:00 CEST | 1234 | Europe/Berlin"


def test_test_runs_are_marked_in_the_subject():
    assert render_subject("Revenue {{date}}", _context(), test=True) == "[TEST] Revenue 2026-03-29"


def test_subject_with_line_breaks_stays_one_line():
    subject = render_subject("A\r\nBcc: x@evil.example\n\tB{{ '\\r\\n' }}C", _context(), test=False)
    assert "\r" not in subject and "\n" not in subject
    assert subject == "A Bcc: x@evil.example B C"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ report_name.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% set x = [] %}{{ x.append(1) }}",
    ],
)
def test_templates_that_reach_for_internals_are_refused(template):
    with pytest.raises(PermanentError) as caught:
        render_template(template, _context(), field="subject")
    assert "subject template" in caught.value.message


def test_unknown_variable_is_a_clear_error():
    with pytest.raises(PermanentError, match="invalid"):
        render_template("{{ nope }}", _context(), field="body")


def test_runaway_template_output_is_capped():
    with pytest.raises(PermanentError, match="more than"):
        render_template("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", _context(), field="body")


def test_html_body_escapes_data_and_text_part_has_an_aligned_table():
    preview = Preview(columns=["region", "note"], rows=[["<b>EMEA</b>", 'a & "b"']], total_rows=2)
    text, html = compose_body(
        "Hello {{ report_name }}",
        {**_context(), "report_name": "<i>R</i>"},
        subject="S <x>",
        preview=preview,
        attachments=(),
        links=(),
    )
    assert "&lt;b&gt;EMEA&lt;/b&gt;" in html and "<b>EMEA</b>" not in html
    assert "Hello &lt;i&gt;R&lt;/i&gt;" in html
    assert "First 1 of 2 rows" in text
    assert "region      | note" in text and '<b>EMEA</b> | a & "b"' in text


def test_file_names_lose_paths_and_control_characters_but_keep_unicode():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename('ra"port\r\n.csv') == "raport.csv"
    assert safe_filename("Umsätze März.xlsx") == "Umsätze März.xlsx"


def test_non_ascii_attachment_name_is_rfc2231_encoded_and_round_trips():
    content = MailContent(
        "S", "t", "<p>h</p>", (Attachment("Umsätze März.csv", "text/csv; charset=utf-8", b"a,b\r\n"),)
    )
    message = build_message(
        content,
        sender="r@example.com",
        sender_name="R",
        recipient="a@example.com",
        reply_to=None,
        now=RUN,
        message_id="<x@example.com>",
    )
    raw = message.as_bytes()
    assert b"filename*=utf-8''Ums%C3%A4tze%20M%C3%A4rz.csv" in raw
    reparsed = message_from_bytes(raw, policy=policy.default)
    (part,) = reparsed.iter_attachments()
    assert part.get_filename() == "Umsätze März.csv"
    assert part.get_content_type() == "text/csv" and part.get_param("charset") == "utf-8"


def test_cc_copy_names_only_its_own_recipient():
    content = MailContent("S", "t", None)
    message = build_message(
        content,
        sender="r@example.com",
        sender_name=None,
        recipient="cc@example.com",
        kind="cc",
        reply_to=None,
        now=RUN,
        message_id="<y@example.com>",
    )
    assert message["Cc"] == "cc@example.com"
    assert str(message["To"]) == "undisclosed-recipients:;"
    assert message["Date"] and message["Message-ID"] == "<y@example.com>"


def _artifact(name, fmt, content_type, data):
    return SimpleNamespace(id=name, filename=name, format=fmt, content_type=content_type, size=len(data), data=data)


def _reader(artifact):
    return iter([artifact.data[i : i + 7] for i in range(0, len(artifact.data), 7)])


def test_preview_reads_the_first_rows_from_the_csv_file():
    csv_data = "region,revenue\r\n" + "".join(f'"EMEA\n{n}",{n}\r\n' for n in range(50))
    artifact = _artifact("r.csv", "csv", "text/csv; charset=utf-8", csv_data.encode())
    preview = read_preview([artifact], _reader, total_rows=50, limit=5)
    assert preview.columns == ["region", "revenue"]
    assert preview.rows[0] == ["EMEA\n0", "0"] and len(preview.rows) == 5
    assert preview.total_rows == 50


def test_preview_reads_xlsx_when_there_is_no_csv():
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["region", "revenue"])
    workbook.active.append(["EMEA", 12.0])
    buffer = io.BytesIO()
    workbook.save(buffer)
    artifact = _artifact(
        "r.xlsx", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", buffer.getvalue()
    )
    preview = read_preview([artifact], _reader, total_rows=1)
    assert preview.columns == ["region", "revenue"] and preview.rows == [["EMEA", "12"]]


def test_size_guard_attaches_small_files_zips_big_ones_and_links_what_cannot_fit():
    small = _artifact("small.csv", "csv", "text/csv", b"a,b\r\n1,2\r\n")
    big = _artifact("big.csv", "csv", "text/csv", b"x,y\r\n" * 10_000)
    noise = _artifact("noise.pdf", "pdf", "application/pdf", os.urandom(5000))
    plan = plan_files([small, big, noise], _reader, limit=4000)
    assert [a.filename for a in plan.attachments] == ["small.csv", "big.csv.zip"]
    assert [a.filename for a in plan.too_large] == ["noise.pdf"]
    assert sum(len(a.data) for a in plan.attachments) <= 4000
