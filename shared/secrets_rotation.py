"""Re-encrypt every stored secret with the newest key in BIAPP_FERNET_KEYS."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db import transaction
from shared.errors import SecretUnreadableError
from shared.models import DataSource, Destination, EmailConfig
from shared.security.crypto import SecretBox


def rotate_all(factory: sessionmaker[Session], settings: Settings) -> tuple[int, list[str]]:
    box = SecretBox(settings.fernet_keys)
    rotated = 0
    unreadable: list[str] = []
    with transaction(factory) as session:
        for model, label in ((DataSource, "data source"), (EmailConfig, "email config")):
            rows = session.execute(sa.select(model).where(model.password_encrypted.is_not(None))).scalars()
            for row in rows:
                try:
                    row.password_encrypted = box.rotate(row.password_encrypted)
                    rotated += 1
                except SecretUnreadableError:
                    unreadable.append(f"{label} {row.id}")
        # Webhook URLs, Slack and Teams URLs and tokens, webhook signing secrets.
        for row in session.execute(sa.select(Destination).where(Destination.secret_encrypted.is_not(None))).scalars():
            try:
                row.secret_encrypted = box.rotate(row.secret_encrypted)
                rotated += 1
            except SecretUnreadableError:
                unreadable.append(f"{row.kind} destination {row.id}")
    return rotated, unreadable
