"""Entry module for gunicorn (`biapp api`)."""

from services.api.app import create_app
from shared.config import load_settings
from shared.logs import configure_logging

_settings = load_settings()
configure_logging("api", _settings.log_format, _settings.log_level)
app = create_app(_settings)
