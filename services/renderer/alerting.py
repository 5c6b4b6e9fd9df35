"""Evaluate one alert event: stream the query once, compare, record, and hand notifications to the mailer.

The rows are counted or aggregated as they stream by (shared.alerts.Evaluator), never
held. The result is written with one guarded UPDATE (`… WHERE state = 'pending'`)
while the alert row is locked, so a duplicated message changes nothing and two
evaluations of one alert decide "did it just turn true?" one after the other.
The delivery ledger rows are inserted in that same transaction; `deliver_alert`
is published after the commit.
"""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from shared import access, alerts, executions
from shared.context import WorkerContext
from shared.db import transaction
from shared.errors import BIAppError
from shared.executions import planned_recipients
from shared.messaging import DELIVER_ALERT, publish_after_commit
from shared.models import Alert, AlertDelivery, AlertEvent, SavedQuery
from shared.outages import is_database_outage
from shared.query.engine import prepare, stream_prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    state: str  # true | false | error
    observed: object = None
    row_count: int | None = None
    message: str | None = None
    error: str | None = None
    # False when the owner may no longer read the query: the event records why, nobody is emailed.
    notify: bool = True


def evaluate_event(ctx: WorkerContext, event_id: str) -> str | None:
    """Evaluate a pending event; returns its new state, or None when there was nothing to do.

    The query is planned in one short transaction and runs with no application connection held.
    """
    event_uuid = uuid.UUID(event_id)
    extra = {"event_id": event_id}
    with ctx.session_factory() as session:
        event = session.get(AlertEvent, event_uuid)
        if event is None or event.state != "pending":
            log.info("alert evaluation skipped: already done or gone", extra=extra)
            return None
        alert = session.get(Alert, event.alert_id)
        if alert is None:
            return None
        extra["alert_id"] = str(alert.id)
        planned = _plan(ctx, session, alert)
        session.expunge_all()
    result = planned if isinstance(planned, Result) else _run(ctx, alert, *planned)
    state = _record(ctx, event_uuid, result)
    if state is not None:
        log.info("alert evaluated: %s", state, extra=extra)
    return state


def _plan(ctx: WorkerContext, session, alert: Alert):
    """(condition, prepared query) for the alert, or the error Result when it cannot run."""
    try:
        condition = alerts.parse_condition(alert.condition)
        query = session.get(SavedQuery, alert.saved_query_id)
        if query is None:
            raise alerts.ConditionFailedError("The alert's saved query no longer exists.")
        access.check_report_sources(session, alert.owner_id, query=query)
        prepared = prepare(session, query, engines=ctx.engines, timezone=alert.timezone or "UTC", now=ctx.clock.now())
    except Exception as exc:
        return _error(alert, exc)
    return condition, prepared


def _run(ctx: WorkerContext, alert: Alert, condition, prepared) -> Result:
    try:
        # The count must be exact; rows are never held.
        with stream_prepared(prepared, settings=ctx.settings, max_rows=sys.maxsize) as stream:
            outcome = alerts.evaluate(condition, stream.columns, stream)
    except Exception as exc:
        return _error(alert, exc)
    return Result("true" if outcome.met else "false", outcome.observed, outcome.row_count, outcome.message)


def _error(alert: Alert, exc: Exception) -> Result:
    if isinstance(exc, access.RunNotAllowedError):
        return Result("error", error=exc.message, message=f"The alert was not evaluated: {exc.message}", notify=False)
    if isinstance(exc, BIAppError):
        return Result("error", error=exc.message, message=f"The alert could not be evaluated: {exc.message}")
    if is_database_outage(exc):
        raise exc  # the application database: retried, the event stays pending
    log.exception("alert evaluation failed", extra={"alert_id": str(alert.id)}, exc_info=exc)
    text = f"Evaluating the alert failed ({type(exc).__name__})."
    return Result("error", error=text, message=text)


def _record(ctx: WorkerContext, event_id: uuid.UUID, result: Result) -> str | None:
    now = ctx.clock.now()
    with transaction(ctx.session_factory) as session:
        event_alert = session.execute(sa.select(AlertEvent.alert_id).where(AlertEvent.id == event_id)).scalar()
        alert = session.execute(sa.select(Alert).where(Alert.id == event_alert).with_for_update()).scalar()
        if alert is None:
            return None
        reason = alerts.notification_reason(
            notify=alert.notify,
            notify_on_recovery=alert.notify_on_recovery,
            notify_on_error=alert.notify_on_error,
            previous_condition=alert.last_condition,
            previous_state=alert.last_state,
            state=result.state,
        )
        wanted = reason and result.notify
        recipients = planned_recipients(alert, trigger="schedule", requester=None) if wanted else []
        moved = session.execute(
            sa.update(AlertEvent)
            .where(AlertEvent.id == event_id, AlertEvent.state == "pending")
            .values(
                state=result.state,
                evaluated_at=now,
                observed=result.observed,
                row_count=result.row_count,
                message=result.message,
                error=result.error,
                notified=bool(recipients),
                notify_reason=reason if recipients else None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            return None
        alert.last_state = result.state
        alert.last_evaluated_at = now
        if result.state != "error":
            alert.last_condition = result.state == "true"
        for planned in recipients:
            session.add(executions.ledger_row(AlertDelivery, planned, event_id=event_id))
    if recipients:
        publish_after_commit(ctx.publisher, DELIVER_ALERT, event_id)
    return result.state
