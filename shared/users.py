"""Accounts: creating users, checking passwords, changing them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.errors import AuthenticationFailedError, ConflictError, FieldError
from shared.models import RevokedToken, User
from shared.security.passwords import (
    DUMMY_HASH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_strength(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise FieldError(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")


def find_by_email(session: Session, email: str) -> User | None:
    return session.execute(sa.select(User).where(User.email == normalise_email(email))).scalar_one_or_none()


def create_user(session: Session, *, email: str, password: str, role: str = "viewer", name: str | None = None) -> User:
    check_password_strength(password)
    if find_by_email(session, email) is not None:
        raise ConflictError("A user with this email already exists.")
    user = User(email=normalise_email(email), password_hash=hash_password(password), role=role, name=name)
    session.add(user)
    session.flush()
    return user


def ensure_admin(session: Session, *, email: str, password: str) -> tuple[User, bool]:
    """Create the first admin; for an existing email make sure it is an admin. Idempotent."""
    user = find_by_email(session, email)
    if user is not None:
        user.role = "admin"
        user.is_active = True
        return user, False
    return create_user(session, email=email, password=password, role="admin"), True


def authenticate(session: Session, email: str, password: str) -> User:
    user = find_by_email(session, email)
    if user is None or not user.is_active:
        verify_password(DUMMY_HASH, password)  # same cost whether or not the user exists
        raise AuthenticationFailedError("Wrong email or password.")
    if not verify_password(user.password_hash, password):
        raise AuthenticationFailedError("Wrong email or password.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def set_password(session: Session, user: User, new: str, *, now: datetime, field: str = "password") -> None:
    """Give the user a new password and end every session opened with an older one.

    Every token carries the user's `password_version` ("pwv"); bumping it here (in SQL, so two
    changes at once still give two versions) makes older tokens fail at once.
    """
    check_password_strength(new, field)
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.password_version = User.password_version + 1
    session.flush()  # the new version is read back from the row when a token is issued


def change_password(session: Session, user: User, *, current: str, new: str, now: datetime) -> None:
    if not verify_password(user.password_hash, current):
        raise FieldError("current_password", "is wrong")
    set_password(session, user, new, now=now, field="new_password")


def revoke_token(session: Session, *, jti: str, expires_at: datetime) -> None:
    if session.get(RevokedToken, jti) is None:
        session.add(RevokedToken(jti=jti, expires_at=expires_at))
