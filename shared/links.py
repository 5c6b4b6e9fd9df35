"""Signed, expiring download links for files too large to attach.

A token names one artifact and the instant it stops working, signed with
BIAPP_SECRET_KEY (itsdangerous, HMAC-SHA1 over a purpose-specific salt). Anyone
holding the link may download that one file until it expires, without logging
in; changing BIAPP_SECRET_KEY revokes every link at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from shared.config import Settings
from shared.errors import GoneError, NotFoundError

_SALT = "biapp.artifact-download-link"
PATH_PREFIX = "/api/links"


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt=_SALT)


def link_expiry(settings: Settings, *, now: datetime, artifact_expires_at: datetime | None) -> datetime:
    """BIAPP_LINK_EXPIRY_HOURS from now, but never past the file's own retention."""
    expires = now + timedelta(hours=settings.link_expiry_hours)
    if artifact_expires_at is not None:
        retention = artifact_expires_at if artifact_expires_at.tzinfo else artifact_expires_at.replace(tzinfo=UTC)
        expires = min(expires, retention)
    return expires


def sign(settings: Settings, artifact_id: uuid.UUID, *, expires_at: datetime) -> str:
    return _serializer(settings).dumps({"a": str(artifact_id), "e": int(expires_at.timestamp())})


def url_for(settings: Settings, token: str) -> str:
    return f"{settings.public_url}{PATH_PREFIX}/{token}"


def verify(settings: Settings, token: str, *, now: datetime) -> uuid.UUID:
    """The artifact a token opens; NotFoundError for a forged token, GoneError once it expired."""
    try:
        payload = _serializer(settings).loads(token)
        artifact_id = uuid.UUID(payload["a"])
        expires = datetime.fromtimestamp(int(payload["e"]), UTC)
    except (BadSignature, KeyError, TypeError, ValueError):
        raise NotFoundError("This download link is not valid.") from None
    if now >= expires:
        raise GoneError("This download link has expired.")
    return artifact_id
