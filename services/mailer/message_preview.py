"""A report's subject and body as a run would send them, before the report is saved: the editor's preview.

The same code as a run renders them with (compose.py: the bounded sandbox, the one-line subject and its
default, nh3's allow-list for the body), fed sample values instead of a run's: the report's name, the
current time in its time zone, and SAMPLE_ROW_COUNT rows. A template that would fail is a FieldError
naming `subject` or `body`, by the rule a save applies first (shared.templates.check_template), so the
preview never accepts what the save refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from services.mailer.compose import render_subject, render_user_body
from shared.errors import PermanentError
from shared.templates import check_template, template_context, template_field_error

SAMPLE_ROW_COUNT = 1234


@dataclass(frozen=True)
class MessagePreview:
    subject: str
    html: str  # the body's sanitised HTML, without the email's own layout around it
    text: str  # the body's plain-text part
    sample: dict  # the template variables it was rendered with


def preview_message(
    name: str, subject: str | None, body: str | None, *, timezone: str, now: datetime
) -> MessagePreview:
    """Render `subject` and `body` for a report called `name` whose run is due `now` in `timezone`."""
    check_template(subject, "subject")
    check_template(body, "body")
    sample = template_context(name, now.astimezone(ZoneInfo(timezone)), SAMPLE_ROW_COUNT, timezone)
    try:
        line = render_subject(subject, sample, test=False)
    except PermanentError as exc:  # passed the save's check but fails with these values
        raise template_field_error(exc, "subject") from None
    try:
        rendered = render_user_body(body, sample)
    except PermanentError as exc:
        raise template_field_error(exc, "body") from None
    return MessagePreview(line, str(rendered.html), rendered.text, sample)
