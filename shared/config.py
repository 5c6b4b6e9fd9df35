"""Every setting of BIApp Reports, read from the environment in this one place.

`load_settings()` returns a frozen `Settings`; a missing or invalid value raises
`ConfigError` whose message is one line naming the variable, so each service can
stop at start with that line instead of failing later in the middle of a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from shared.outbound import AllowEntry, OutboundPolicy, parse_entry


class ConfigError(Exception):
    """A setting is missing or invalid; the message is a single line."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    secret_key: str = field(repr=False)
    fernet_keys: tuple[str, ...] = field(repr=False)
    artifact_store: str = "database"
    artifact_retention_days: int = 30
    execution_retention_days: int = 365
    max_attachment_bytes: int = 10 * 1024 * 1024
    pdf_max_rows: int = 1000
    max_report_rows: int = 1_000_000
    query_timeout_s: int = 300
    render_time_limit_s: int = 900
    mail_time_limit_s: int = 600
    public_url: str = "http://127.0.0.1:8000"
    allow_signup: bool = False
    sqlite_root: str = "./var/sqlite"
    smtp_allowed_hosts: tuple[str, ...] = ()
    smtp_timeout_s: int = 30
    smtp_ca_file: str | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    jwt_expires_s: int = 3600
    max_request_bytes: int = 1024 * 1024
    login_rate_limit: str = "10 per minute"
    login_address_rate_limit: str = "50 per minute"
    ratelimit_storage_url: str = "database"  # the application database: one count for every API process
    stuck_queued_after_s: int = 120
    render_max_retries: int = 3
    max_backoff_s: int = 600
    link_expiry_hours: int = 72
    outbound_allow: tuple[AllowEntry, ...] = ()
    preview_timeout_s: int = 30
    previews_per_user: int = 2
    previews_per_process: int = 16
    connection_test_rate_limit: str = "10 per minute"
    lease_ttl_s: int = 30
    # A report whose recent renders took this long (median of the last three) renders on the heavy queue,
    # so it never holds a process that small reports are waiting for; 0 keeps every run on one queue.
    heavy_render_s: int = 60
    mail_retry_window_s: int = 3600
    webhook_timeout_s: int = 10
    slack_api_url: str = "https://slack.com/api/"
    org_name: str | None = None
    brand_color: str | None = None
    brand_logo: bytes | None = field(default=None, repr=False)  # the file's bytes, read once at start
    # Longer than the idle timeout of the load balancers in front (60 s on most): the balancer, not the
    # API, closes an idle connection, so it never sends a request on one the API has just closed.
    api_keepalive_s: int = 75
    # Due reports claimed, inserted and committed per dispatcher transaction.
    dispatch_batch_size: int = 1000
    # Old executions deleted per purge transaction, and how long one purge tick may work.
    purge_batch_size: int = 250
    purge_time_budget_s: int = 300
    # gunicorn worker processes of `biapp api`; 0: one per usable CPU, at most 8 (services/cli.py default_api_workers).
    api_workers: int = 0

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """The policy for connections non-admin users configure (see shared/outbound.py)."""
        return OutboundPolicy(self.outbound_allow)

    @property
    def broker_is_memory(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def database_is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _database_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme in {"postgresql", "postgres"}:
        # A bare postgresql:// means psycopg 3, never psycopg2.
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if scheme in {"postgresql+psycopg", "sqlite", "sqlite+pysqlite"}:
        return raw
    raise ValueError("must be a postgresql+psycopg:// or sqlite:/// URL")


def _broker_url(raw: str) -> str:
    if raw.startswith("memory://"):
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
        raise ValueError("must be an amqp://user:password@host:port/vhost URL or memory://")
    if "heartbeat=" not in (parts.query or ""):
        # Idle publisher connections in the API are dropped by RabbitMQ without heartbeats.
        raw += ("&" if parts.query else "?") + "heartbeat=60"
    return raw


def _secret_key(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters")
    return raw


def _fernet_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ValueError("must list at least one Fernet key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except Exception:
            raise ValueError(f"key {position} is not a valid Fernet key (32 url-safe base64 bytes)") from None
    return keys


def _artifact_store(raw: str) -> str:
    if raw == "database":
        return raw
    if raw.startswith("filesystem:") and len(raw) > len("filesystem:"):
        return raw
    raise ValueError("must be 'database' or 'filesystem:/path'")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    return parse


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return raw.rstrip("/")


def _slack_api_url(raw: str) -> str:
    return _public_url(raw) + "/"


def _hosts(raw: str) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


def _rate(raw: str) -> str:
    parts = raw.split()
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] != "per":
        raise ValueError("must read like '10 per minute'")
    return raw


def _outbound_allow(raw: str) -> tuple[AllowEntry, ...]:
    return tuple(parse_entry(entry) for entry in raw.split(",") if entry.strip())


def _text(raw: str) -> str:
    return raw


def _existing_file(raw: str) -> str:
    if not Path(raw).is_file():
        raise ValueError(f"must name a readable file, {raw!r} does not exist")
    return raw


_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
MAX_LOGO_BYTES = 200 * 1024


def _brand_color(raw: str) -> str:
    if not _HEX_COLOR.fullmatch(raw):
        raise ValueError(f"must be a colour written #rrggbb, got {raw!r}")
    return raw.lower()


def _logo(raw: str) -> bytes:
    """The logo's bytes: read at start, so a missing or oversized file stops the service there, not mid-send."""
    try:
        data = Path(raw).read_bytes()
    except OSError:
        raise ValueError(f"must name a readable PNG or JPEG file, {raw!r} cannot be read") from None
    if len(data) > MAX_LOGO_BYTES:
        raise ValueError(f"must be at most {MAX_LOGO_BYTES // 1024} KB, {raw!r} has {len(data) // 1024} KB")
    if not data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise ValueError(f"must be a PNG or JPEG file, {raw!r} is neither")
    return data


# name -> (attribute, parser, required)
_SPEC: dict[str, tuple[str, Callable[[str], object], bool]] = {
    "BIAPP_DATABASE_URL": ("database_url", _database_url, True),
    "BIAPP_BROKER_URL": ("broker_url", _broker_url, True),
    "BIAPP_SECRET_KEY": ("secret_key", _secret_key, True),
    "BIAPP_FERNET_KEYS": ("fernet_keys", _fernet_keys, True),
    "BIAPP_ARTIFACT_STORE": ("artifact_store", _artifact_store, False),
    "BIAPP_ARTIFACT_RETENTION_DAYS": ("artifact_retention_days", _int(1, 3650), False),
    "BIAPP_EXECUTION_RETENTION_DAYS": ("execution_retention_days", _int(1, 36500), False),
    "BIAPP_MAX_ATTACHMENT_BYTES": ("max_attachment_bytes", _int(1024), False),
    "BIAPP_PDF_MAX_ROWS": ("pdf_max_rows", _int(1, 100_000), False),
    "BIAPP_MAX_REPORT_ROWS": ("max_report_rows", _int(1, 50_000_000), False),
    "BIAPP_QUERY_TIMEOUT_S": ("query_timeout_s", _int(1, 3600), False),
    "BIAPP_RENDER_TIME_LIMIT_S": ("render_time_limit_s", _int(10, 1500), False),
    "BIAPP_MAIL_TIME_LIMIT_S": ("mail_time_limit_s", _int(10, 1500), False),
    "BIAPP_PUBLIC_URL": ("public_url", _public_url, False),
    "BIAPP_ALLOW_SIGNUP": ("allow_signup", _bool, False),
    "BIAPP_SQLITE_ROOT": ("sqlite_root", _text, False),
    "BIAPP_SMTP_ALLOWED_HOSTS": ("smtp_allowed_hosts", _hosts, False),
    "BIAPP_SMTP_TIMEOUT_S": ("smtp_timeout_s", _int(1, 300), False),
    "BIAPP_SMTP_CA_FILE": ("smtp_ca_file", _existing_file, False),
    "BIAPP_LOG_FORMAT": ("log_format", _choice("json", "text"), False),
    "BIAPP_LOG_LEVEL": ("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR"), False),
    "BIAPP_JWT_EXPIRES_S": ("jwt_expires_s", _int(60, 30 * 86400), False),
    "BIAPP_MAX_REQUEST_BYTES": ("max_request_bytes", _int(1024), False),
    "BIAPP_LOGIN_RATE_LIMIT": ("login_rate_limit", _rate, False),
    "BIAPP_LOGIN_ADDRESS_RATE_LIMIT": ("login_address_rate_limit", _rate, False),
    "BIAPP_RATELIMIT_STORAGE_URL": ("ratelimit_storage_url", _text, False),
    "BIAPP_STUCK_QUEUED_AFTER_S": ("stuck_queued_after_s", _int(10), False),
    "BIAPP_RENDER_MAX_RETRIES": ("render_max_retries", _int(0, 20), False),
    "BIAPP_MAX_BACKOFF_S": ("max_backoff_s", _int(1, 1500), False),
    "BIAPP_LINK_EXPIRY_HOURS": ("link_expiry_hours", _int(1, 24 * 30), False),
    "BIAPP_OUTBOUND_ALLOW": ("outbound_allow", _outbound_allow, False),
    "BIAPP_PREVIEW_TIMEOUT_S": ("preview_timeout_s", _int(1, 600), False),
    "BIAPP_PREVIEWS_PER_USER": ("previews_per_user", _int(1, 50), False),
    "BIAPP_PREVIEWS_PER_PROCESS": ("previews_per_process", _int(1, 1000), False),
    "BIAPP_CONNECTION_TEST_RATE_LIMIT": ("connection_test_rate_limit", _rate, False),
    "BIAPP_LEASE_TTL_S": ("lease_ttl_s", _int(3, 600), False),
    "BIAPP_HEAVY_RENDER_S": ("heavy_render_s", _int(0, 86400), False),
    "BIAPP_MAIL_RETRY_WINDOW_S": ("mail_retry_window_s", _int(60, 7 * 86400), False),
    "BIAPP_WEBHOOK_TIMEOUT_S": ("webhook_timeout_s", _int(1, 120), False),
    "BIAPP_SLACK_API_URL": ("slack_api_url", _slack_api_url, False),
    "BIAPP_ORG_NAME": ("org_name", _text, False),
    "BIAPP_BRAND_COLOR": ("brand_color", _brand_color, False),
    "BIAPP_BRAND_LOGO": ("brand_logo", _logo, False),
    "BIAPP_API_KEEPALIVE_S": ("api_keepalive_s", _int(1, 3600), False),
    "BIAPP_DISPATCH_BATCH_SIZE": ("dispatch_batch_size", _int(1, 10_000), False),
    "BIAPP_PURGE_BATCH_SIZE": ("purge_batch_size", _int(1, 50_000), False),
    "BIAPP_PURGE_TIME_BUDGET_S": ("purge_time_budget_s", _int(1, 540), False),
    "BIAPP_API_WORKERS": ("api_workers", _int(0, 64), False),
}

SETTING_NAMES = tuple(_SPEC)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every BIAPP_* variable; raise ConfigError on the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, (attribute, parse, required) in _SPEC.items():
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            if required:
                raise ConfigError(f"{name} is required but not set")
            continue
        try:
            values[attribute] = parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.render_time_limit_s > 1500 or settings.mail_time_limit_s > 1500:
        raise ConfigError("time limits must stay under RabbitMQ's 30-minute consumer_timeout")
    return settings


def sqlite_root(settings: Settings) -> Path:
    return Path(settings.sqlite_root).resolve()
