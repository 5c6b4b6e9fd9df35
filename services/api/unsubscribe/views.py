"""One-click unsubscribe links from report emails (RFC 8058): no login, a signed token in the URL.

GET only shows a page with one button: link scanners and previews fetch URLs, and must not
unsubscribe anyone. POST (the button, or a mail client's `List-Unsubscribe=One-Click`) records it;
asking again answers the same page. A forged or damaged token is a 404; a genuine one for a report
deleted since is a 410 (nothing will be sent again). There is no rate limit by client address on
purpose: mailbox providers post one-click requests for many users from the same few addresses,
and only a validly signed token writes anything.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields

from services.api.parsing import Blueprint
from services.api.runtime import db, runtime
from services.api.unsubscribe import page
from shared import unsubscribe
from shared.errors import NotFoundError
from shared.models import ScheduledReport

blp = Blueprint(
    "unsubscribe", __name__, url_prefix=unsubscribe.PATH_PREFIX, description="One-click unsubscribe links in emails"
)

_HTML = {"type": "string"}


class OneClickSchema(Schema):
    """The body a mail client posts (RFC 8058); the page's button sends the same."""

    class Meta:
        unknown = EXCLUDE

    one_click = fields.String(
        data_key="List-Unsubscribe", load_default=None, metadata={"example": "One-Click", "description": "One-Click"}
    )


def _find(token: str):
    """(report, address) the token names, or the page that answers instead."""
    try:
        report_id, address = unsubscribe.verify(runtime().settings, token)
    except NotFoundError:
        return None, None, page.invalid()
    report = db().get(ScheduledReport, report_id)
    if report is None:
        return None, None, page.report_gone()
    return report, address, None


@blp.route("/<string:token>", methods=["GET"])
@blp.doc(security=[])
@blp.response(200, _HTML, content_type="text/html", description="a page with one Unsubscribe button")
@blp.alt_response(404, schema=_HTML, content_type="text/html", description="not a valid link")
@blp.alt_response(410, schema=_HTML, content_type="text/html", description="the report was deleted")
def confirm(token: str):
    """Ask before unsubscribing (no login); this changes nothing, only the page's button does."""
    report, address, answer = _find(token)
    return answer or page.confirm(report.name, address)


@blp.route("/<string:token>", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(OneClickSchema, location="form", required=False)
@blp.response(200, _HTML, content_type="text/html", description="unsubscribed (also when already)")
@blp.alt_response(404, schema=_HTML, content_type="text/html", description="not a valid link")
@blp.alt_response(410, schema=_HTML, content_type="text/html", description="the report was deleted")
def unsubscribe_now(_form, token: str):
    """Stop sending this report to the address in the link (no login; asking twice is fine)."""
    report, address, answer = _find(token)
    if answer is not None:
        return answer
    unsubscribe.record(db(), report.id, address, runtime().clock.now())
    db().commit()
    return page.done(report.name, address)
