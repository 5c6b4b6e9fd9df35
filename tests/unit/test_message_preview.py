"""The report editor's message preview over HTTP: subject and body rendered as a run would, with sample values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.clock import FixedClock
from tests.conftest import build_harness

NOW = datetime(2024, 3, 29, 12, 0, tzinfo=UTC)
PREVIEW = "/api/scheduled-reports/preview-message"


@pytest.fixture
def harness(sqlite_url, tmp_path):
    api = build_harness(sqlite_url, tmp_path)
    api.app.extensions["biapp"].clock = FixedClock(NOW)
    return api


@pytest.fixture
def viewer(harness):
    return harness.create_user("vera@example.com", "viewer")


def test_subject_is_rendered_with_the_report_name_now_in_its_zone_and_sample_rows(viewer):
    response = viewer.post(
        PREVIEW,
        json={
            "name": "Weekly revenue",
            "subject": "{{ report_name }}: {{ row_count }} rows on {{ date }} ({{ run_time }})",
            "timezone": "Europe/Berlin",
            "locale": "de-DE",
        },
    )
    assert response.status_code == 200, response.get_json()
    preview = response.get_json()
    assert preview["subject"] == "Weekly revenue: 1234 rows on 2024-03-29 (2024-03-29 13:00 CET)"
    assert preview["sample"] == {
        "report_name": "Weekly revenue",
        "date": "2024-03-29",
        "run_time": "2024-03-29 13:00 CET",
        "row_count": 1234,
        "timezone": "Europe/Berlin",
    }
    assert preview["html"] == "" and preview["text"] == ""  # no body: a run's email has none either


def test_no_subject_previews_the_default_one_a_run_sends(viewer):
    preview = viewer.post(PREVIEW, json={"name": "Weekly revenue"}).get_json()
    assert preview["subject"] == "Weekly revenue – 2024-03-29"
    assert preview["sample"]["timezone"] == "UTC"


def test_body_is_sanitised_as_the_mailer_does_it(viewer):
    body = (
        '<p>{{ row_count }} rows for <b>{{ report_name }}</b><script>alert("x")</script></p>'
        '<p onclick="steal()"><a href="https://bi.example.com/r">Open</a></p>'
    )
    response = viewer.post(PREVIEW, json={"name": "<Revenue>", "body": body})
    assert response.status_code == 200, response.get_json()
    preview = response.get_json()
    assert "script" not in preview["html"] and "alert" not in preview["html"]
    assert "onclick" not in preview["html"]
    assert "<b>&lt;Revenue&gt;</b>" in preview["html"]  # a variable is text, never markup
    assert '<a href="https://bi.example.com/r" rel="noopener noreferrer">Open</a>' in preview["html"]
    assert preview["text"] == "1234 rows for <Revenue>\n\nOpen (https://bi.example.com/r)"


@pytest.mark.parametrize(
    ("field", "template", "words"),
    [
        ("subject", "Revenue {{ dat }}", "'dat' is undefined"),
        ("body", "{% for x in %}", "The body template is invalid"),
        ("body", "{{ 1 // (row_count - 1234) }}", "ZeroDivisionError"),  # fine on save, fails with the sample
    ],
)
def test_a_template_that_would_fail_is_a_422_naming_its_field(viewer, field, template, words):
    response = viewer.post(PREVIEW, json={"name": "Weekly revenue", field: template})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == [field]
    assert words in errors[field][0]


def test_fields_are_validated_like_a_report(viewer):
    response = viewer.post(PREVIEW, json={"name": "", "subject": "a\nb", "timezone": "Mars/Olympus", "locale": "x"})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"name", "subject", "timezone", "locale"}


def test_without_a_session_it_is_401(harness):
    response = harness.client().post(PREVIEW, json={"name": "Weekly revenue"})
    assert response.status_code == 401


def test_the_openapi_document_describes_it(harness):
    spec = harness.client().get("/api/openapi.json").get_json()
    operation = spec["paths"][PREVIEW]["post"]
    assert set(operation["responses"]) >= {"200", "422"}
    assert set(spec["components"]["schemas"]["MessagePreview"]["properties"]) == {"subject", "html", "text", "sample"}
