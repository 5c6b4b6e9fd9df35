"""Build one MIME message per recipient from the report's sandboxed templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.errors import PermanentError

_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)

DEFAULT_SUBJECT = "{{ report_name }} – {{ date }}"
DEFAULT_BODY = "{{ report_name }} for {{ date }}: {{ row_count }} rows. The files are attached."


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class MailContent:
    subject: str
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]


def template_context(report_name: str, run_local: datetime, row_count: int, timezone: str) -> dict:
    return {
        "report_name": report_name,
        "date": run_local.strftime("%Y-%m-%d"),
        "run_time": run_local.strftime("%Y-%m-%d %H:%M %Z"),
        "row_count": row_count,
        "timezone": timezone,
    }


def render_template(source: str, context: dict, *, html: bool = False, field: str = "template") -> str:
    env = _HTML_ENV if html else _ENV
    try:
        return env.from_string(source).render(**context)
    except SecurityError:
        raise PermanentError(f"The {field} template tried something unsafe and was refused.") from None
    except TemplateError as exc:
        raise PermanentError(f"The {field} template is invalid: {exc}") from None


def render_subject(source: str | None, context: dict, *, test: bool) -> str:
    subject = render_template(source or DEFAULT_SUBJECT, context, field="subject")
    # No header injection: a subject is one line whatever the template produced.
    subject = " ".join(subject.split())[:250]
    return f"[TEST] {subject}" if test else subject


def build_message(
    content: MailContent,
    *,
    sender: str,
    sender_name: str | None,
    recipient: str,
    reply_to: str | None,
    now: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = content.subject
    message["From"] = Address(display_name=sender_name or "", addr_spec=sender)
    message["To"] = recipient
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.text)
    if content.html:
        message.add_alternative(content.html, subtype="html")
    for attachment in content.attachments:
        maintype, _, subtype = attachment.content_type.split(";")[0].partition("/")
        message.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.filename
        )
    return message
