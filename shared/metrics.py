"""Prometheus series shared by every service (each process exports its own)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("biapp_http_requests_total", "HTTP requests answered by the API", ["method", "route", "status"])
HTTP_LATENCY = Histogram("biapp_http_request_duration_seconds", "API request latency", ["method", "route"])
EXECUTIONS = Counter("biapp_executions_total", "Executions that reached a final state", ["status", "trigger"])
EXECUTIONS_QUEUED = Counter("biapp_executions_queued_total", "Executions created", ["trigger"])
RENDER_SECONDS = Histogram(
    "biapp_render_duration_seconds",
    "Time to run the query and write every file",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200),
)
RENDER_ROWS = Histogram(
    "biapp_render_rows",
    "Rows per rendered report",
    buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000),
)
DELIVERIES = Counter(
    "biapp_deliveries_total", "Deliveries by outcome and channel (email, webhook, slack, teams)", ["outcome", "channel"]
)
SCHEDULER_LAG = Histogram(
    "biapp_scheduler_lag_seconds",
    "Start of a scheduled run minus its scheduled time",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
