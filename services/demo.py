"""Demo data for `biapp standalone --demo`: an admin, a sales database, a catalog, a dashboard and its reports.

The demo's report sends the "Sales overview" dashboard (charts) as XLSX, PDF and CSV daily at 08:00 in the
machine's time zone; `seed_demo` says when it was just created, so the caller starts one run at once and
the first email arrives while the person who started the demo is still looking.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared import email_configs, users
from shared.clock import machine_zone_name
from shared.config import Settings
from shared.db import transaction
from shared.models import (
    Dashboard,
    DashboardWidget,
    DataSource,
    EmailConfig,
    SavedQuery,
    ScheduledReport,
    SemanticEntity,
)
from shared.reports import apply_changes, delete_report
from shared.storage import build_store

DEMO_ADMIN = "admin@example.com"
MAIN_REPORT = "Demo: sales overview"
# What earlier versions seeded: a report due every minute, which flooded the outbox. Removed on the next start.
RETIRED_REPORT = "Demo: revenue by region"
REGIONS = ("EMEA", "North America", "LATAM", "APAC")
PRODUCTS = ("Starter", "Team", "Business", "Enterprise")
DEMO_DIMENSIONS = [
    {"name": "region", "column": "region", "type": "string", "label": "Region"},
    {"name": "product", "column": "product", "type": "string", "label": "Product"},
    {"name": "customer", "column": "customer", "type": "string", "label": "Customer"},
    {"name": "order_date", "column": "order_date", "type": "date", "label": "Order date"},
]
DEMO_MEASURES = [
    {"name": "orders", "column": None, "aggregation": "count", "label": "Orders"},
    {"name": "units", "column": "quantity", "aggregation": "sum", "type": "integer", "label": "Units"},
    {"name": "revenue", "column": "amount", "aggregation": "sum", "label": "Revenue", "format": "currency"},
]


def create_sales_database(path: Path, rows: int = 600) -> None:
    """A small, deterministic orders table to report on."""
    if path.exists():
        return
    rng = random.Random(42)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "create table orders (id integer primary key, order_date date not null, region text not null,"
            " product text not null, customer text not null, quantity integer not null, amount numeric not null)"
        )
        start = date.today() - timedelta(days=180)
        for order_id in range(1, rows + 1):
            amount = Decimal(rng.randint(5_000, 500_000)) / 100
            connection.execute(
                "insert into orders values (?, ?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    (start + timedelta(days=rng.randint(0, 180))).isoformat(),
                    rng.choice(REGIONS),
                    rng.choice(PRODUCTS),
                    f"Customer {rng.randint(1, 80):03d}",
                    rng.randint(1, 20),
                    str(amount),
                ),
            )
    connection.close()


def point_default_mail_at(factory: sessionmaker[Session], *, smtp_host: str, smtp_port: int) -> None:
    """The system default email config sends to the local sink."""
    with transaction(factory) as session:
        config = email_configs.system_default(session)
        if config is None:
            config = EmailConfig(owner_id=None, is_system_default=True, from_address="reports@biapp.local")
            config.from_name = "BIApp Reports"
            session.add(config)
        config.host, config.port, config.security = smtp_host, smtp_port, "none"
        config.username = None
        config.password_encrypted = None


@dataclass(frozen=True)
class DemoSeed:
    """What the demo was seeded with: the login, and the demo report (to run once now if it is new)."""

    email: str
    password: str
    report_id: uuid.UUID
    report_is_new: bool
    schedule: dict


def seed_demo(
    factory: sessionmaker[Session], settings: Settings, *, smtp_host: str, smtp_port: int, data_dir: Path
) -> DemoSeed:
    point_default_mail_at(factory, smtp_host=smtp_host, smtp_port=smtp_port)
    create_sales_database(Path(settings.sqlite_root) / "sales.db")
    password_file = data_dir / "admin_password"
    password = os.environ.get("BIAPP_ADMIN_PASSWORD")
    if not password:
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
    with transaction(factory) as session:
        admin, _created = users.ensure_admin(session, email=DEMO_ADMIN, password=password)
        source = session.execute(sa.select(DataSource).where(DataSource.name == "Sample sales")).scalar_one_or_none()
        if source is None:
            source = DataSource(name="Sample sales", kind="sqlite", path="sales.db", options={}, owner_id=admin.id)
            session.add(source)
            session.flush()
        entity = session.execute(sa.select(SemanticEntity).where(SemanticEntity.name == "Orders")).scalar_one_or_none()
        if entity is None:
            entity = SemanticEntity(
                name="Orders",
                description="One row per order in the sample sales database.",
                data_source_id=source.id,
                table_name="orders",
                dimensions=DEMO_DIMENSIONS,
                measures=DEMO_MEASURES,
                shared=True,
                owner_id=admin.id,
            )
            session.add(entity)
            session.flush()
        query = session.execute(
            sa.select(SavedQuery).where(SavedQuery.name == "Revenue by region")
        ).scalar_one_or_none()
        if query is None:
            query = SavedQuery(
                name="Revenue by region",
                description="Orders, units and revenue per region over the last 90 days.",
                kind="semantic",
                entity_id=entity.id,
                definition={
                    "dimensions": ["region"],
                    "measures": ["orders", "units", "revenue"],
                    "filters": [{"field": "order_date", "op": "eq", "value": "last_90_days"}],
                    "order_by": [{"field": "revenue", "direction": "desc"}],
                    "limit": None,
                },
                shared=True,
                owner_id=admin.id,
            )
            session.add(query)
            session.flush()
        retire_old_demo(session, settings)
        dashboard = seed_dashboard(session, admin, entity)
        report, is_new = seed_main_report(session, admin, dashboard)
        return DemoSeed(DEMO_ADMIN, password, report.id, is_new, dict(report.schedule))


def retire_old_demo(session: Session, settings: Settings) -> None:
    old = session.execute(sa.select(ScheduledReport).where(ScheduledReport.name == RETIRED_REPORT)).scalar_one_or_none()
    if old is not None and (old.schedule or {}).get("cron") == "* * * * *":
        delete_report(session, build_store(settings.artifact_store), old)
        session.flush()


def seed_main_report(session: Session, admin, dashboard: Dashboard) -> tuple[ScheduledReport, bool]:
    """The demo's report: the dashboard with its charts as XLSX, PDF and CSV, daily at 08:00 local time."""
    report = session.execute(sa.select(ScheduledReport).where(ScheduledReport.name == MAIN_REPORT)).scalar_one_or_none()
    if report is not None:
        return report, False
    report = ScheduledReport(owner_id=admin.id, is_active=True)
    apply_changes(
        report,
        {
            "name": MAIN_REPORT,
            "dashboard_id": dashboard.id,
            "schedule": {"frequency": "daily", "time": "08:00", "timezone": machine_zone_name()},
            "recipients": ["sales-team@example.com", "cfo@example.com"],
            "cc": [],
            "formats": ["xlsx", "pdf", "csv"],
            "locale": "en-US",
            "subject": "Sales overview – {{date}}",
            "body": "<p>Good morning, here are the sales of the last 90 days.</p>",
            "send_if_empty": True,
            "is_active": True,
        },
        _now(),
    )
    session.add(report)
    session.flush()
    return report, True


DASHBOARD_QUERIES = {
    "Revenue, orders and units by region": {
        "dimensions": ["region"],
        "measures": ["revenue", "orders", "units"],
        "filters": [{"field": "order_date", "op": "eq", "value": "last_90_days"}],
        "order_by": [{"field": "revenue", "direction": "desc"}],
    },
    "Daily revenue by region": {
        "dimensions": ["order_date", "region"],
        "measures": ["revenue"],
        "filters": [{"field": "order_date", "op": "eq", "value": "last_90_days"}],
        "order_by": [{"field": "order_date", "direction": "desc"}],  # newest first: the chart still runs forward
    },
    "Units by product": {
        "dimensions": ["product"],
        "measures": ["units"],
        "filters": [{"field": "order_date", "op": "eq", "value": "last_90_days"}],
        "order_by": [{"field": "units", "direction": "desc"}],
    },
    "Total revenue": {
        "dimensions": [],
        "measures": ["revenue"],
        "filters": [{"field": "order_date", "op": "eq", "value": "last_90_days"}],
    },
}
# title, query, chart, x, series, measures
DASHBOARD_WIDGETS = (
    ("Revenue, last 90 days", "Total revenue", "kpi", None, None, ["revenue"]),
    ("Revenue and orders by region", "Revenue, orders and units by region", "bar", "region", None, []),
    ("Daily revenue by region", "Daily revenue by region", "line", "order_date", "region", ["revenue"]),
    ("Units by product", "Units by product", "donut", "product", None, ["units"]),
)
DASHBOARD = "Sales overview"
BERLIN_REPORT = "Demo: sales overview (Berlin)"


def seed_dashboard(session: Session, admin, entity: SemanticEntity) -> Dashboard:
    """The demo dashboard (a KPI card, bars, lines by region, a donut) and a German report that sends it."""
    dashboard = session.execute(sa.select(Dashboard).where(Dashboard.name == DASHBOARD)).scalar_one_or_none()
    if dashboard is not None:
        return dashboard
    queries = {}
    for name, definition in DASHBOARD_QUERIES.items():
        queries[name] = SavedQuery(
            name=name,
            kind="semantic",
            entity_id=entity.id,
            definition={"limit": None, **definition},
            shared=True,
            owner_id=admin.id,
        )
        session.add(queries[name])
    session.flush()
    dashboard = Dashboard(name=DASHBOARD, description="Sales of the last 90 days.", shared=True, owner_id=admin.id)
    for position, (title, query, chart, x, series, measures) in enumerate(DASHBOARD_WIDGETS):
        dashboard.widgets.append(
            DashboardWidget(
                position=position,
                title=title,
                saved_query_id=queries[query].id,
                chart=chart,
                x_field=x,
                series_field=series,
                measures=measures,
            )
        )
    session.add(dashboard)
    session.flush()
    report = ScheduledReport(owner_id=admin.id, is_active=True)
    apply_changes(
        report,
        {
            "name": BERLIN_REPORT,
            "dashboard_id": dashboard.id,
            "schedule": {"frequency": "daily", "time": "08:00", "timezone": "Europe/Berlin"},
            "recipients": ["vertrieb@example.com"],
            "cc": [],
            "formats": ["xlsx", "pdf", "csv"],
            "locale": "de-DE",
            "subject": "Vertriebsübersicht – {{date}}",
            "body": "<p>Guten Morgen, hier die Zahlen der letzten 90 Tage.</p>",
            "send_if_empty": True,
            "is_active": True,
        },
        _now(),
    )
    session.add(report)
    return dashboard


def _now():
    from shared.clock import SystemClock

    return SystemClock().now()
