"""An alert's events as a page: on PostgreSQL one statement whose rows are each event's JSON, deliveries
included, as AlertEventSchema dumps it (tests compare the two on every kind of event); elsewhere the ORM
objects, dumped by the schema."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.api.pagination import PAGE, keyset_paginate
from services.api.serialization import delivery_pairs, iso_sql, json_list_sql, json_object_sql, json_response
from shared.alerts import EVENTS_ORDER
from shared.models import AlertEvent

_EVENT = {
    "id": f"{PAGE}.id::text",
    "alert_id": f"{PAGE}.alert_id::text",
    "trigger": f"{PAGE}.trigger",
    "state": f"{PAGE}.state",
    "scheduled_for": iso_sql(f"{PAGE}.scheduled_for"),
    "queued_at": iso_sql(f"{PAGE}.queued_at"),
    "evaluated_at": iso_sql(f"{PAGE}.evaluated_at"),
    "observed": f"{PAGE}.observed",
    "row_count": f"{PAGE}.row_count",
    "message": f"{PAGE}.message",
    "error": f"{PAGE}.error",
    "notified": f"{PAGE}.notified",
    "notify_reason": f"{PAGE}.notify_reason",
    "deliveries": json_list_sql(
        "alert_deliveries d", delivery_pairs("d", smtp_reply=False), "d.recipient", f"d.event_id={PAGE}.id"
    ),
}
# Built once: an event of a page, whole, in JSON made by PostgreSQL.
ITEM_JSON = sa.literal_column("(" + json_object_sql(_EVENT) + "::text)").label("item_json")


def _as_json(page: sa.Subquery) -> sa.Select:
    return sa.select(page.c.queued_at, page.c.id, ITEM_JSON)


def event_page(session: Session, query: sa.Select, args: dict, on_empty=None):
    """A page of `query` (an alert's events, newest first): the JSON response on PostgreSQL, else the
    page's body and headers for the view's schema to dump."""
    if session.get_bind().dialect.name != "postgresql":
        body, headers = keyset_paginate(session, query, args, *EVENTS_ORDER, on_empty=on_empty)
        return body, 200, headers
    columns = [column for column in AlertEvent.__table__.c]
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*columns),
        args,
        *EVENTS_ORDER,
        rows=True,
        decorate=_as_json,
        on_empty=on_empty,
    )
    body["items"] = [orjson.Fragment(row.item_json) for row in body["items"]]
    return json_response(body, headers)
