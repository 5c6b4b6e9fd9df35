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
    "id": "ev.id::text",
    "alert_id": "ev.alert_id::text",
    "trigger": "ev.trigger",
    "state": "ev.state",
    "scheduled_for": iso_sql("ev.scheduled_for"),
    "queued_at": iso_sql("ev.queued_at"),
    "evaluated_at": iso_sql("ev.evaluated_at"),
    "observed": "ev.observed",
    "row_count": "ev.row_count",
    "message": "ev.message",
    "error": "ev.error",
    "notified": "ev.notified",
    "notify_reason": "ev.notify_reason",
    "deliveries": json_list_sql(
        "alert_deliveries d", delivery_pairs("d", smtp_reply=False), "d.recipient", "d.event_id=ev.id"
    ),
}
# Built once: an event of a page, whole, in JSON made by PostgreSQL; the page holds only its sort keys (an
# index-only scan), each event is read here by its primary key.
ITEM_JSON = sa.literal_column(
    f"(SELECT {json_object_sql(_EVENT)}::text FROM alert_events ev WHERE ev.id={PAGE}.id)"
).label("item_json")


def _as_json(page: sa.Subquery) -> sa.Select:
    return sa.select(page.c.queued_at, page.c.id, ITEM_JSON)


def event_page(session: Session, query: sa.Select, args: dict, on_empty=None):
    """A page of `query` (an alert's events, newest first): the JSON response on PostgreSQL, else the
    page's body and headers for the view's schema to dump."""
    if session.get_bind().dialect.name != "postgresql":
        body, headers = keyset_paginate(session, query, args, *EVENTS_ORDER, on_empty=on_empty)
        return body, 200, headers
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(AlertEvent.queued_at, AlertEvent.id),
        args,
        *EVENTS_ORDER,
        rows=True,
        decorate=_as_json,
        on_empty=on_empty,
    )
    body["items"] = [orjson.Fragment(row.item_json) for row in body["items"]]
    return json_response(body, headers)
