"""Dashboards: named, ordered widgets, each a title, a saved query and a chart type.

A widget is just a saved query the dashboard's owner can read; a scheduled report
may target a dashboard and then renders one section per widget, in order.
"""

from __future__ import annotations

import sqlalchemy as sa
from marshmallow import Schema, fields, validate

from services.api.pagination import PageArgs, page_schema, paginate
from services.api.parsing import Blueprint
from services.api.patching import patch_schema, patched
from services.api.runtime import db
from services.api.security import get_owned, login_required, me, only_visible, visible_to
from shared.errors import ConflictError, ValidationFailedError
from shared.models import Dashboard, DashboardWidget, SavedQuery, ScheduledReport
from shared.models.catalog import CHART_KINDS

blp = Blueprint("dashboards", __name__, url_prefix="/api/dashboards", description="Dashboards")

MAX_WIDGETS = 50


class WidgetSchema(Schema):
    id = fields.UUID(dump_only=True)
    position = fields.Integer(dump_only=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    saved_query_id = fields.UUID(required=True)
    chart = fields.String(load_default="table", validate=validate.OneOf(CHART_KINDS))
    x = fields.String(
        attribute="x_field",
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The column on the x axis (or the slices); empty: the first non-numeric column."},
    )
    series = fields.String(
        attribute="series_field",
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "A column whose values each get their own line or bar group (pivoted)."},
    )
    measures = fields.List(
        fields.String(validate=validate.Length(min=1, max=255)),
        load_default=list,
        validate=validate.Length(max=10),
        metadata={"description": "The measure columns drawn; empty: every numeric column."},
    )


class DashboardSchema(Schema):
    id = fields.UUID(dump_only=True)
    owner_id = fields.UUID(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, load_default=None)
    shared = fields.Boolean(load_default=False)
    widgets = fields.List(fields.Nested(WidgetSchema), load_default=list, validate=validate.Length(max=MAX_WIDGETS))
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


def _chart_problems(widget: dict, query: SavedQuery) -> list[tuple[str, str]]:
    """What is wrong with a widget's chart fields; a semantic query's columns are known before it runs."""
    problems = []
    x, series, measures = widget.get("x_field"), widget.get("series_field"), widget.get("measures") or []
    kind = widget.get("chart", "table")
    if kind in ("pie", "donut", "kpi") and len(measures) > 1:
        problems.append(("measures", f"a {kind} chart shows one measure"))
    if kind in ("pie", "donut", "kpi") and series:
        problems.append(("series", f"a {kind} chart has no series"))
    if series and series == x:
        problems.append(("series", "the series column cannot also be the x column"))
    if len(set(measures)) != len(measures):
        problems.append(("measures", "a measure is named twice"))
    if query.kind == "semantic":
        definition = query.definition or {}
        known = {*(definition.get("dimensions") or []), *(definition.get("measures") or [])}
        for name, value in (("x", x), ("series", series)):
            if value and value not in known:
                problems.append((name, f"{value!r} is not a column of the saved query"))
        unknown = [m for m in measures if m not in known]
        if unknown:
            problems.append(("measures", f"{', '.join(map(repr, unknown))} not columns of the saved query"))
    return problems


def _apply(dashboard: Dashboard, data: dict) -> None:
    session = db()
    user = me()
    errors: dict[str, list[str]] = {}
    for index, widget in enumerate(data["widgets"]):
        query = session.get(SavedQuery, widget["saved_query_id"])
        if query is None or not visible_to(user, query.owner_id, query.shared):
            errors[f"widgets.{index}.saved_query_id"] = ["no such saved query"]
            continue
        errors.update({f"widgets.{index}.{name}": [problem] for name, problem in _chart_problems(widget, query)})
    if errors:
        raise ValidationFailedError("Some widgets are invalid.", errors=errors)
    dashboard.name, dashboard.description, dashboard.shared = data["name"], data["description"], data["shared"]
    # Widgets are replaced as a whole: their order in the request is their order on the dashboard.
    dashboard.widgets.clear()
    for position, widget in enumerate(data["widgets"]):
        dashboard.widgets.append(DashboardWidget(position=position, **widget))


@blp.route("", methods=["GET"])
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_schema(DashboardSchema))
def list_dashboards(args):
    query = sa.select(Dashboard).order_by(Dashboard.name, Dashboard.id)
    query = only_visible(query, Dashboard)
    body, headers = paginate(db(), query, args)
    return body, 200, headers


@blp.route("", methods=["POST"])
@login_required("admin", "analyst")
@blp.arguments(DashboardSchema)
@blp.response(201, DashboardSchema)
def create_dashboard(data):
    dashboard = Dashboard(owner_id=me().id, widgets=[])
    _apply(dashboard, data)
    session = db()
    session.add(dashboard)
    session.commit()
    return dashboard


@blp.route("/<uuid:dashboard_id>", methods=["GET"])
@login_required()
@blp.response(200, DashboardSchema)
def read_dashboard(dashboard_id):
    return get_owned(Dashboard, dashboard_id, what="dashboard")


@blp.route("/<uuid:dashboard_id>", methods=["PUT"])
@login_required("admin", "analyst")
@blp.arguments(DashboardSchema)
@blp.response(200, DashboardSchema)
def update_dashboard(data, dashboard_id):
    dashboard = get_owned(Dashboard, dashboard_id, writable=True, what="dashboard")
    _apply(dashboard, data)
    db().commit()
    return dashboard


@blp.route("/<uuid:dashboard_id>", methods=["PATCH"])
@login_required("admin", "analyst")
@blp.arguments(patch_schema(DashboardSchema))
@blp.response(200, DashboardSchema)
def patch_dashboard(patch, dashboard_id):
    """Change only the fields given, by PUT's rules.

    `widgets`, when given, is the whole ordered list.
    """
    dashboard = get_owned(Dashboard, dashboard_id, writable=True, what="dashboard")
    _apply(dashboard, patched(DashboardSchema(), dashboard, patch))
    db().commit()
    return dashboard


@blp.route("/<uuid:dashboard_id>", methods=["DELETE"])
@login_required("admin", "analyst")
@blp.response(204)
def delete_dashboard(dashboard_id):
    session = db()
    dashboard = get_owned(Dashboard, dashboard_id, writable=True, what="dashboard")
    if session.execute(sa.select(ScheduledReport.id).where(ScheduledReport.dashboard_id == dashboard.id)).first():
        raise ConflictError("Scheduled reports still send this dashboard; delete or change them first.")
    session.delete(dashboard)
    session.commit()
