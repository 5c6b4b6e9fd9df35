"""User templates (report subjects and bodies) in Jinja2's immutable sandbox.

Shared by the mailer, which renders them, and the API, which checks them when a
report is saved so that a broken template is a 422 at once, not a failed run later.
"""

from __future__ import annotations

from datetime import UTC, datetime

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.errors import FieldError, PermanentError

_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)

MAX_BODY_CHARS = 200_000
TEMPLATE_VARIABLES = ("report_name", "date", "run_time", "row_count", "timezone")


def template_context(report_name: str, run_local: datetime, row_count: int, timezone: str) -> dict:
    return {
        "report_name": report_name,
        "date": run_local.strftime("%Y-%m-%d"),
        "run_time": run_local.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "row_count": row_count,
        "timezone": timezone,
    }


def render_template(
    source: str, context: dict, *, html: bool = False, field: str = "template", limit: int = MAX_BODY_CHARS
) -> str:
    """Render a user template in the sandbox; PermanentError (a clear message) on anything unsafe or invalid."""
    env = _HTML_ENV if html else _ENV
    try:
        parts: list[str] = []
        size = 0
        for piece in env.from_string(source).generate(**context):
            parts.append(piece)
            size += len(piece)
            if size > limit:
                raise PermanentError(f"The {field} template produces more than {limit} characters.")
        return "".join(parts)
    except SecurityError:
        raise PermanentError(f"The {field} template tried something unsafe and was refused.") from None
    except TemplateError as exc:
        raise PermanentError(f"The {field} template is invalid: {exc.message or type(exc).__name__}") from None


def check_template(source: str | None, field: str) -> None:
    """Raise FieldError(field) when a template would fail at send time."""
    if not source:
        return
    sample = template_context("Report", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), 10, "UTC")
    try:
        render_template(source, sample, field=field)
    except PermanentError as exc:
        allowed = ", ".join(TEMPLATE_VARIABLES)
        raise FieldError(field, f"{exc.message} Available variables: {allowed}.") from None
