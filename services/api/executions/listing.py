"""Pages of executions (a report's history, every run) as JSON, without an ORM object or a schema per value.

A page of 50 runs carries about 150 deliveries and 100 files: loaded as ORM objects and dumped field by
field through marshmallow that was ~4,000 field calls and ~300 objects per request, most of a history
page's time. On PostgreSQL a page is one statement whose rows are each run's JSON, deliveries and files
included, made by the database (`_ITEM_SQL`) beside the page's count; elsewhere a select of columns, the
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

from services.api import pagination
from services.api.pagination import decode_cursor, keys_of, keyset_paginate, page_of
from services.api.serialization import delivery_pairs, iso_sql, json_list_sql, json_object_sql, json_response
from shared import reports
from shared.destinations import ICONS
from shared.models import Artifact, Delivery, ReportExecution, ScheduledReport

_KEYS = keys_of(reports.HISTORY_ORDER)
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
# A page's run, whole, as ExecutionSchema would dump it, in JSON made by PostgreSQL: the page itself holds
# only the sort keys (an index-only scan, its filters on the index's included columns); each of its runs is
# read here by its primary key.
_ITEM_SQL = (
    "SELECT "
    + json_object_sql(_RUN).replace(":download_prefix", "%(download_prefix)s")
    + "::text FROM report_executions e WHERE e.id=p.id"
)
_ORDER_SQL = "e.queued_at DESC, e.id DESC"


def _conditions(args: dict, report_ids: list, owner_id) -> tuple[list[str], dict]:
    """The page's WHERE, as SQL on `report_executions e` and its parameters (the same filters as
    shared.reports.history_query, the SQLAlchemy statement of the other databases)."""
    conditions, params = [], {}
    for name, values in (("report_id", report_ids), ("status", args["status"]), ("trigger", args["trigger"])):
        # One value is an equality, which an index on (…, that column, queued_at, id) reads in order.
        if len(values) == 1:
            conditions.append(f"e.{name}=%({name})s")
            params[name] = values[0]
        elif values:
            conditions.append(f"e.{name}=ANY(%({name})s)")
            params[name] = list(values)
    if args.get("since") is not None:
        conditions.append("e.queued_at>=%(since)s")
        params["since"] = args["since"]
    if args.get("until") is not None:
        conditions.append("e.queued_at<%(until)s")
        params["until"] = args["until"]
    if owner_id is not None:  # anyone but an admin: runs of their own reports
        params["owner_id"] = owner_id
        if len(report_ids) == 1:  # one lookup, once
            mine = "SELECT 1 FROM scheduled_reports r WHERE r.id=%(report_id)s AND r.owner_id=%(owner_id)s"
            conditions.append(f"EXISTS({mine})")
        else:
            # `(… IN (subquery)) IS TRUE` keeps the subquery a hashed set the index scan probes for each run;
            # a bare IN becomes a join that looks each run's report up in turn (2x slower on a long history).
            # The set is `mine`, read once for the page and its count (see _page_in_sql).
            conditions.append("(e.report_id IN (SELECT id FROM mine)) IS TRUE")
    return conditions, params


def _page_in_sql(session: Session, args: dict, report_ids: list, owner_id, on_empty) -> tuple[dict, dict]:
    """One statement, written as SQL and run by the driver as it is (no statement objects to build per
    request): the page's sort keys, each run's JSON, and the capped count."""
    conditions, params = _conditions(args, report_ids, owner_id)
    where = " AND ".join(conditions) or "true"
    mine = ""
    if "mine" in where:  # the caller's own reports, once
        mine = "WITH mine AS MATERIALIZED (SELECT r.id FROM scheduled_reports r WHERE r.owner_id=%(owner_id)s) "
    if args.get("count") == "exact":
        count = f"SELECT count(*) FROM report_executions e WHERE {where}"
    else:  # in the list's order: the count walks the page's index and stops at the cap
        count = f"SELECT count(*) FROM (SELECT 1 FROM report_executions e WHERE {where} ORDER BY {_ORDER_SQL}"
        count += " LIMIT %(cap)s) c"
        params["cap"] = pagination.TOTAL_CAP + 1
    page_where = where
    if args.get("cursor"):
        params["after_at"], params["after_id"] = decode_cursor(_KEYS, args["cursor"])
        page_where += " AND (e.queued_at,e.id)<(%(after_at)s,%(after_id)s)"
    page = f"SELECT e.queued_at,e.id FROM report_executions e WHERE {page_where} ORDER BY {_ORDER_SQL} LIMIT %(limit)s"
    params["limit"] = args["limit"] + 1
    if args["offset"] and not args.get("cursor"):
        page += " OFFSET %(offset)s"
        params["offset"] = args["offset"]
    params["download_prefix"] = f"{request.script_root}/api/executions/"
    statement = (
        f"{mine}SELECT p.queued_at,p.id,({_ITEM_SQL}) AS item_json,({count}) AS {pagination.TOTAL}"
        f" FROM ({page}) p ORDER BY p.queued_at DESC,p.id DESC"
    )
    connection = session.connection()
    found = connection.exec_driver_sql(statement, params).all()
    if found:
        total = found[0][3]
    else:
        if on_empty is not None:
            on_empty()
        first = not args.get("cursor") and not args["offset"]
        total = 0 if first else connection.exec_driver_sql(mine + count, params).scalar_one()
    body, headers = page_of(found, total, args, _KEYS)
    body["items"] = [orjson.Fragment(row.item_json) for row in body["items"]]
    return body, headers


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


def execution_page(session: Session, args: dict, *, report_ids: list, owner_id=None, on_empty=None):
    """A page of runs in history order as the JSON response, with its paging headers: of `report_ids` (all
    when empty), filtered by `args` (status, trigger, from/to), of reports owned by `owner_id` unless None
    (an admin). `on_empty` runs when the page has no rows (it may raise: the report is not visible).

    On PostgreSQL one statement reads the page, its count and each run's deliveries and files as JSON;
    elsewhere SQLAlchemy statements do and the items are built here.
    """
    if session.get_bind().dialect.name == "postgresql":
        return json_response(*_page_in_sql(session, args, report_ids, owner_id, on_empty))
    query = reports.history_query(
        status=args["status"], trigger=args["trigger"], since=args.get("since"), until=args.get("until")
    )
    if report_ids:
        query = query.where(ReportExecution.report_id.in_(report_ids))
    if owner_id is not None:
        query = query.where(
            ReportExecution.report_id.in_(sa.select(ScheduledReport.id).where(ScheduledReport.owner_id == owner_id))
        )
    body, headers = keyset_paginate(
        session,
        query.with_only_columns(*EXECUTION_COLUMNS),
        args,
        *reports.HISTORY_ORDER,
        rows=True,
        on_empty=on_empty,
    )
    body["items"] = dump_executions(session, body["items"], f"{request.script_root}/api/executions")
    return json_response(body, headers)
