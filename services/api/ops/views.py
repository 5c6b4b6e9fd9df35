"""Liveness, readiness and metrics: plain Flask routes, outside /api and auth."""

from __future__ import annotations

import logging
import os
import time

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from services.api.ops.collectors import PipelineCollector
from services.api.runtime import db, runtime
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks: dict[str, str] = {}
    try:
        db().execute(sa.text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # a readiness probe reports, it does not raise
        log.warning("readiness: database unavailable: %s", type(exc).__name__)
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        runtime().broker_ready()
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("readiness: broker unavailable: %s", type(exc).__name__)
        checks["broker"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


def _pipeline_registry() -> CollectorRegistry:
    """Per-app registry for the scrape-time pipeline series (the process registry holds the rest)."""
    registry = current_app.extensions.get("biapp_pipeline_metrics")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        rt = runtime()
        registry.register(PipelineCollector(rt.settings, rt.session_factory, rt.clock.now))
        current_app.extensions["biapp_pipeline_metrics"] = registry
    return registry


def _process_registry() -> CollectorRegistry:
    """Under `biapp api` (gunicorn workers, PROMETHEUS_MULTIPROC_DIR set) the sum over every worker."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = current_app.extensions.get("biapp_multiprocess_metrics")
    if registry is None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        current_app.extensions["biapp_multiprocess_metrics"] = registry
    return registry


@bp.get("/metrics")
def metrics():
    body = generate_latest(_process_registry()) + generate_latest(_pipeline_registry())
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def install_request_metrics(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("request_started")
        if started is not None:
            HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response
