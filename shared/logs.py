"""Logging: one JSON object per line (default) or plain text for humans.

Every line carries `ts`, `level`, `service` and, where they apply, `execution_id` and
`report_id`: given with `extra=`, or taken from the Dramatiq message being processed, so
even a library's log line during a render names the run. Credentials are scrubbed from
every message and traceback before it is written (URL passwords, `password=…`, bearer
tokens, JWTs, Fernet tokens): secrets never reach the logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_CONTEXT_KEYS = ("execution_id", "report_id", "message_id", "actor", "recipient_count", "lag_s")
# Actors whose first argument is an execution id.
_EXECUTION_ACTORS = frozenset({"render_report", "deliver_report"})

REDACTED = "***"
_SECRET_PATTERNS = (
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?P<keep>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.IGNORECASE), r"\g<keep>***"),
    # password=…, "password": "…", secret_key: …, fernet_keys=…, api_key=…, token=…
    (
        re.compile(
            r"(?P<keep>[\"']?\b(?:[a-z_]*password|passwd|secret(?:_key)?|fernet_keys?|api_key|access_token|token)"
            r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}]+",
            re.IGNORECASE,
        ),
        r"\g<keep>***",
    ),
    (re.compile(r"(?P<keep>\bBearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\g<keep>***"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"), REDACTED),  # JWT
    (re.compile(r"\bgAAAAA[A-Za-z0-9_\-]{20,}={0,2}"), REDACTED),  # Fernet token
)


def redact(text: str) -> str:
    """The text with every credential-looking value replaced by ***."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _message_context(record: logging.LogRecord) -> None:
    """Fill message_id / actor / execution_id from the Dramatiq message this thread is processing."""
    try:
        from dramatiq.middleware import CurrentMessage

        message = CurrentMessage.get_current_message()
    except Exception:  # no dramatiq, or no message: nothing to add
        return
    if message is None:
        return
    if getattr(record, "message_id", None) is None:
        record.message_id = message.message_id
    if getattr(record, "actor", None) is None:
        record.actor = message.actor_name
    if getattr(record, "execution_id", None) is None and message.actor_name in _EXECUTION_ACTORS and message.args:
        record.execution_id = str(message.args[0])


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        _message_context(record)
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        # json.dumps escapes newlines: a traceback stays on its one line.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        _message_context(record)
        text = redact(super().format(record))
        context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if getattr(record, k, None))
        return f"{text} [{context}]" if context else text


def configure_logging(service: str, log_format: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries: their info lines say nothing an operator acts on.
    for name in ("pika", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)
