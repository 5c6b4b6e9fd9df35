"""Alerts: CRUD, evaluate now and the evaluation history."""

from __future__ import annotations

import sqlalchemy as sa

from services.api import destinations as destinations_api
from services.api.alerts.listing import event_page
from services.api.alerts.schemas import AlertEventSchema, AlertSchema, EvaluateAcceptedSchema, EventArgs
from services.api.pagination import PageArgs, cursor_page_schema, page_schema, paginate
from services.api.parsing import Blueprint
from services.api.patching import patch_schema, patched_with_destinations
from services.api.runtime import db, runtime
from services.api.security import check_visible, get_owned, login_required, me, only_visible, under_visible
from shared import alerts, reports
from shared.models import Alert, AlertEvent

blp = Blueprint("alerts", __name__, url_prefix="/api/alerts", description="Alerts on saved queries")


def _get(alert_id, *, writable: bool = False) -> Alert:
    return get_owned(Alert, alert_id, writable=writable, what="alert")


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(AlertSchema))
def list_alerts(args):
    query = sa.select(Alert).order_by(Alert.name, Alert.id)
    query = only_visible(query, Alert)
    body, headers = paginate(db(), query, args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required()
@blp.arguments(AlertSchema)
@blp.response(201, AlertSchema)
def create_alert(data):
    session = db()
    user = me()
    reports.check_source(session, user, data)
    alert = Alert(owner_id=user.id, is_active=data["is_active"])
    destinations_api.apply(alert, data)
    # The schedule rules are the reports' own: timezone from the schedule, next_run_at from now.
    reports.apply_changes(alert, data, runtime().clock.now())
    session.add(alert)
    session.commit()
    return alert


@blp.route("/<uuid:alert_id>", methods=["GET"])
@login_required()
@blp.response(200, AlertSchema)
def get_alert(alert_id):
    return _get(alert_id)


@blp.route("/<uuid:alert_id>", methods=["PUT"])
@login_required()
@blp.arguments(AlertSchema)
@blp.response(200, AlertSchema)
def update_alert(data, alert_id):
    return _update(_get(alert_id, writable=True), data)


@blp.route("/<uuid:alert_id>", methods=["PATCH"])
@login_required()
@blp.arguments(patch_schema(AlertSchema))
@blp.response(200, AlertSchema)
def patch_alert(patch, alert_id):
    """Change only the fields given, by PUT's rules.

    `{"is_active": false}` pauses the alert; `condition` and `schedule`, when given, are replaced whole.
    """
    alert = _get(alert_id, writable=True)
    return _update(alert, patched_with_destinations(AlertSchema(), alert, patch))


def _update(alert: Alert, data: dict) -> Alert:
    session = db()
    reports.check_source(session, me(), data)
    if data["condition"] != alert.condition:
        # A new condition starts from "unknown": its first true answer is news.
        alert.last_condition = None
    destinations_api.apply(alert, data)
    reports.apply_changes(alert, data, runtime().clock.now())
    session.commit()
    return alert


@blp.route("/<uuid:alert_id>", methods=["DELETE"])
@login_required()
@blp.response(204)
def delete_alert(alert_id):
    session = db()
    alert = _get(alert_id, writable=True)
    session.execute(sa.delete(AlertEvent).where(AlertEvent.alert_id == alert.id))
    session.delete(alert)
    session.commit()


@blp.route("/<uuid:alert_id>/evaluate", methods=["POST"])
@login_required()
@blp.response(202, EvaluateAcceptedSchema)
def evaluate_alert(alert_id):
    """Evaluate now (and notify by the alert's rules); next_run_at does not move."""
    alert = _get(alert_id)
    rt = runtime()
    event = alerts.start_manual(rt.session_factory, rt.publisher, alert.id, requester_id=me().id, now=rt.clock.now())
    return {"event_id": event.id, "state": event.state}


@blp.route("/<uuid:alert_id>/events", methods=["GET"])
@login_required()
@blp.arguments(EventArgs, location="query")
@blp.response(200, cursor_page_schema(AlertEventSchema))
def list_events(args, alert_id):
    """Evaluations of this alert, newest first; filter by state or trigger; page by `cursor`."""
    query = alerts.events_query(alert_id, state=args.get("state"), trigger=args.get("trigger"))
    query = under_visible(query, Alert, alert_id)
    return event_page(db(), query, args, on_empty=lambda: check_visible(Alert, alert_id, what="alert"))


@blp.route("/<uuid:alert_id>/destinations/<uuid:destination_id>/test", methods=["POST"])
@login_required()
@destinations_api.test_limit
@blp.response(200, destinations_api.DestinationTestResultSchema)
def test_destination(alert_id, destination_id):
    """Send a test message to one destination now; the answer is what the far end said."""
    owner = _get(alert_id, writable=True)
    return destinations_api.send_test(owner, destinations_api.find(owner, destination_id), what="alert")


@blp.route("/<uuid:alert_id>/destinations/<uuid:destination_id>/rotate-secret", methods=["POST"])
@login_required()
@blp.response(200, destinations_api.RotatedSecretSchema)
def rotate_destination_secret(alert_id, destination_id):
    """A new webhook signing secret, shown once; the old one stops working at once."""
    owner = _get(alert_id, writable=True)
    result = destinations_api.rotate(destinations_api.find(owner, destination_id))
    db().commit()
    return result
