"""Which SMTP settings a report's owner sends with: their own, else the system default."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.errors import SmtpConfigurationError
from shared.models import EmailConfig


def for_owner(session: Session, owner_id: uuid.UUID | None) -> EmailConfig | None:
    return session.execute(sa.select(EmailConfig).where(EmailConfig.owner_id == owner_id)).scalar_one_or_none()


def system_default(session: Session) -> EmailConfig | None:
    return session.execute(
        sa.select(EmailConfig).where(EmailConfig.owner_id.is_(None), EmailConfig.is_system_default.is_(True))
    ).scalar_one_or_none()


def effective(session: Session, owner_id: uuid.UUID) -> EmailConfig:
    config = for_owner(session, owner_id) or system_default(session)
    if config is None:
        raise SmtpConfigurationError(
            "No email configuration: set one with PUT /api/email-config (or ask an admin for a system default)."
        )
    return config
