"""One-click unsubscribe (RFC 8058): signed links naming a report and an address, and who left.

A token names (report id, address), signed with BIAPP_SECRET_KEY under a salt of its own
(itsdangerous, as shared/links.py). It never expires: the link in a years-old email must still
work. Changing BIAPP_SECRET_KEY invalidates every link already sent; a recipient then asks the
report's owner instead. Recording is an INSERT … ON CONFLICT DO NOTHING, so a mail client's POST,
its retry and the page's button leave one row. Addresses are compared lower-cased, as
shared.destinations.planned compares them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import NotFoundError
from shared.models import Unsubscription

_SALT = "biapp.report-unsubscribe"
PATH_PREFIX = "/api/unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"


def normalise(address: str) -> str:
    return address.strip().lower()


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt=_SALT)


def token_for(settings: Settings, report_id: uuid.UUID, address: str) -> str:
    return _serializer(settings).dumps({"r": str(report_id), "a": normalise(address)})


def url_for(settings: Settings, token: str) -> str:
    return f"{settings.public_url}{PATH_PREFIX}/{token}"


def verify(settings: Settings, token: str) -> tuple[uuid.UUID, str]:
    """The (report id, address) a token names; NotFoundError for a forged or damaged token."""
    try:
        payload = _serializer(settings).loads(token)
        return uuid.UUID(payload["r"]), normalise(payload["a"])
    except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise NotFoundError("This unsubscribe link is not valid.") from None


def headers_for(settings: Settings, report_id: uuid.UUID, address: str) -> dict[str, str]:
    """The RFC 2369 / RFC 8058 headers of one recipient's copy of a report."""
    url = url_for(settings, token_for(settings, report_id, address))
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}


def record(session: Session, report_id: uuid.UUID, address: str, now: datetime) -> bool:
    """Note that `address` wants no more of this report; True if it is new (asking twice is fine)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(Unsubscription.__table__)
        .values(id=uuid.uuid4(), report_id=report_id, address=normalise(address), created_at=now)
        .on_conflict_do_nothing(index_elements=["report_id", "address"])
    )
    return session.execute(statement).rowcount == 1


def forget(session: Session, report_id: uuid.UUID, address: str) -> bool:
    """Send the report to `address` again; False if it had not unsubscribed."""
    statement = sa.delete(Unsubscription).where(
        Unsubscription.report_id == report_id, Unsubscription.address == normalise(address)
    )
    return session.execute(statement.execution_options(synchronize_session=False)).rowcount == 1


def listed(session: Session, report_id: uuid.UUID) -> list[Unsubscription]:
    """Who unsubscribed from a report, oldest first."""
    query = sa.select(Unsubscription).where(Unsubscription.report_id == report_id)
    return list(session.execute(query.order_by(Unsubscription.created_at, Unsubscription.address)).scalars())


def unsubscribed_by_report(session: Session, report_ids: list) -> dict[uuid.UUID, set[str]]:
    """The unsubscribed addresses of each report, in one query (the dispatcher asks for a whole batch)."""
    found: dict[uuid.UUID, set[str]] = {}
    if report_ids:
        rows = session.execute(
            sa.select(Unsubscription.report_id, Unsubscription.address).where(Unsubscription.report_id.in_(report_ids))
        )
        for report_id, address in rows:
            found.setdefault(report_id, set()).add(address)
    return found


def unsubscribed(session: Session, report_id: uuid.UUID) -> set[str]:
    return unsubscribed_by_report(session, [report_id]).get(report_id, set())


def everyone_left(session: Session, report) -> bool:
    """Whether a report's every destination is an email address that unsubscribed (its runs reach nobody)."""
    addresses = {normalise(d.address or "") for d in report.destinations if d.kind == "email"}
    if not addresses or any(d.kind != "email" for d in report.destinations):
        return False
    return addresses <= unsubscribed(session, report.id)
