"""The API's pooled connections to data sources, one set per app, built on first use."""

from __future__ import annotations

from flask import current_app

from services.api.runtime import runtime
from shared.query.sources import SourceEngines

_KEY = "biapp.source_engines"


def source_engines() -> SourceEngines:
    engines = current_app.extensions.get(_KEY)
    if engines is None:
        rt = runtime()
        engines = current_app.extensions.setdefault(_KEY, SourceEngines(rt.settings, rt.secrets))
    return engines
