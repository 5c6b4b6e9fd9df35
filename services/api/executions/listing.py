"""Pages of executions (a report's history, every run) as JSON, without an ORM object or a schema per value.

A page of 50 runs carries about 150 deliveries and 100 files: loaded as ORM objects and dumped field by
field through marshmallow that was ~4,000 field calls and ~300 objects per request, most of a history
page's time. On PostgreSQL a page is one statement whose rows are each run's JSON, deliveries and files
included, made by the database (`ITEM_JSON`) beside the page's count; elsewhere a select of columns, the
deliveries and files one select each, and each item built here. Both are exactly what `ExecutionSchema`
dumps for the same run (tests compare them on every kind of run, so they cannot drift apart). The
schemas still describe these lists in the OpenAPI document.
"""

from __future__ import annotations

from collections import defaultdict

import orjson
import sqlalchemy as sa
from flask import request
from sqlalchemy.orm import Session

from services.api.pagination import PAGE, keyset_paginate
from services.api.serialization import delivery_pairs, iso_sql, json_list_sql, json_object_sql, json_response
from shared import reports
from shared.destinations import ICONS
from shared.models import Artifact, Delivery, ReportExecution

EXECUTION_COLUMNS = (
    ReportExecution.id,
    ReportExecution.report_id,
    ReportExecution.trigger,
    ReportExecution.status,
    ReportExecution.scheduled_for,
    ReportExecution.queued_at,
    ReportExecution.started_at,
    ReportExecution.rendered_at,
    ReportExecution.sending_at,
    ReportExecution.finished_at,
    ReportExecution.row_count,
    ReportExecution.truncated,
    ReportExecution.attempts,
    ReportExecution.late,
    ReportExecution.error,
)
DELIVERY_COLUMNS = (
    Delivery.execution_id,
    Delivery.destination_id,
    Delivery.channel,
    Delivery.target,
    Delivery.recipient,
    Delivery.kind,
    Delivery.status,
    Delivery.attempts,
    Delivery.error,
    Delivery.answer,
    Delivery.smtp_reply,
    Delivery.next_attempt_at,
    Delivery.sent_at,
)
ARTIFACT_COLUMNS = (
    Artifact.execution_id,
    Artifact.id,
    Artifact.format,
    Artifact.filename,
    Artifact.content_type,
    Artifact.size,
    Artifact.sha256,
    Artifact.expires_at,
)


def _iso(moment):
    return None if moment is None else moment.isoformat()


def _text(value):
    return None if value is None else str(value)


def _delivery(row) -> dict:
    channel = row.channel or "email"
    target = row.target or row.recipient
    return {
        "destination_id": _text(row.destination_id),
        "kind": row.channel,
        "icon": ICONS.get(channel, "mail"),
        "target": target,
        "recipient": row.recipient if channel == "email" else target,
        "role": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "error": row.error,
        "answer": row.answer or row.smtp_reply,
        "smtp_reply": row.smtp_reply,
        "next_attempt_at": _iso(row.next_attempt_at),
        "sent_at": _iso(row.sent_at),
    }


def _artifact(row, prefix: str) -> dict:
    return {
        "id": str(row.id),
        "format": row.format,
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "expires_at": _iso(row.expires_at),
        "purged_at": None,
        "download_url": f"{prefix}/{row.execution_id}/artifacts/{row.id}",
    }


_DELIVERIES = json_list_sql("deliveries d", delivery_pairs("d", smtp_reply=True), "d.recipient", "d.execution_id=e.id")
_ARTIFACTS = json_list_sql(
    "artifacts a",
    {
        "id": "a.id::text",
        "format": "a.format",
        "filename": "a.filename",
        "content_type": "a.content_type",
        "size": "a.size",
        "sha256": "a.sha256",
        "expires_at": iso_sql("a.expires_at"),
        "purged_at": "NULL",
        "download_url": ":download_prefix||a.execution_id::text||'/artifacts/'||a.id::text",
    },
    "a.created_at",
    "a.execution_id=e.id AND a.purged_at IS NULL",
)
_RUN = {
    "id": "e.id::text",
    "report_id": "e.report_id::text",
    "trigger": "e.trigger",
    "status": "e.status",
    **{
        moment: iso_sql(f"e.{moment}")
        for moment in ("scheduled_for", "queued_at", "started_at", "rendered_at", "sending_at", "finished_at")
    },
    # as Python's int((finished - started).total_seconds() * 1000): in double precision, truncated
    "duration_ms": "trunc(extract(epoch FROM e.finished_at-e.started_at)::float8*1000)::bigint",
    "row_count": "e.row_count",
    "truncated": "e.truncated",
    "attempts": "e.attempts",
    "late": "e.late",
    "error": "e.error",
    "deliveries": _DELIVERIES,
    "artifacts": _ARTIFACTS,
}
# Built once: a page's run, whole, as ExecutionSchema would dump it, in JSON made by PostgreSQL. The page
# itself holds only the sort keys (an index-only scan, its filters on the index's included columns); each of
# its runs is read here by its primary key.
ITEM_JSON = (
    sa.text("SELECT " + json_object_sql(_RUN) + f"::text FROM report_executions e WHERE e.id={PAGE}.id")
    .bindparams(
        sa.bindparam("download_prefix", type_=sa.Text, callable_=lambda: f"{request.script_root}/api/executions/")
    )
    .columns(sa.column("item", sa.Text))
    .scalar_subquery()
    .label("item_json")
)


def _as_json(page: sa.Subquery) -> sa.Select:
    """Each row of the page as its item's JSON, beside its sort key (see keyset_paginate's `decorate`)."""
    return sa.select(page.c.queued_at, page.c.id, ITEM_JSON)


def dump_executions(session: Session, rows, prefix: str) -> list[dict]:
    """Rows of EXECUTION_COLUMNS as ExecutionSchema dumps them, with their deliveries and live files (two
    more statements): the items of a page where the database cannot build them (SQLite)."""
    deliveries: dict = defaultdict(list)
    files: dict = defaultdict(list)
    if rows:
        ids = [row.id for row in rows]
        found = session.execute(
            sa.select(*DELIVERY_COLUMNS).where(Delivery.execution_id.in_(ids)).order_by(Delivery.recipient)
        )
        for row in found:
            deliveries[row.execution_id].append(_delivery(row))
        found = session.execute(
            sa.select(*ARTIFACT_COLUMNS)
            .where(Artifact.execution_id.in_(ids), Artifact.purged_at.is_(None))
            .order_by(Artifact.created_at)
        )
        for row in found:
            files[row.execution_id].append(_artifact(row, prefix))
    items = []
    for row in rows:
        duration = None
        if row.started_at and row.finished_at:
            duration = int((row.finished_at - row.started_at).total_seconds() * 1000)
        items.append(
            {
                "id": str(row.id),
                "report_id": str(row.report_id),
                "trigger": row.trigger,
                "status": row.status,
                "scheduled_for": _iso(row.scheduled_for),
                "queued_at": _iso(row.queued_at),
                "started_at": _iso(row.started_at),
                "rendered_at": _iso(row.rendered_at),
                "sending_at": _iso(row.sending_at),
                "finished_at": _iso(row.finished_at),
                "duration_ms": duration,
                "row_count": row.row_count,
                "truncated": row.truncated,
                "attempts": row.attempts,
                "late": row.late,
                "error": row.error,
                "deliveries": deliveries.get(row.id, []),
                "artifacts": files.get(row.id, []),
            }
        )
    return items


def execution_page(session: Session, query: sa.Select, args: dict, on_empty=None):
    """A page of `query` (executions in history order) as the JSON response, with its paging headers.

    On PostgreSQL one statement reads the page, its count and each run's deliveries and files.
    `on_empty` runs when the page has no rows (see keyset_paginate).
    """
    prefix = f"{request.script_root}/api/executions"
    in_sql = session.get_bind().dialect.name == "postgresql"
    columns = (ReportExecution.queued_at, ReportExecution.id) if in_sql else EXECUTION_COLUMNS
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*columns),
        args,
        *reports.HISTORY_ORDER,
        rows=True,
        decorate=_as_json if in_sql else None,
        on_empty=on_empty,
    )
    if in_sql:
        body["items"] = [orjson.Fragment(row.item_json) for row in body["items"]]
    else:
        body["items"] = dump_executions(session, body["items"], prefix)
    return json_response(body, headers)
