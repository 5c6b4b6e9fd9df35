"""Who is calling, and may they do this? Used by every view."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps

import sqlalchemy as sa
from flask import Flask, g
from flask_jwt_extended import JWTManager, current_user, verify_jwt_in_request

from services.api.auth.sessions import install_session_cookies
from services.api.errors import error_response
from services.api.runtime import db
from shared.errors import NotFoundError, PermissionDeniedError
from shared.models import RevokedToken, User

_UNREAD = object()


def _token_user(payload: dict) -> tuple[User | None, bool]:
    """The token's user and whether the token was revoked: one round trip to the database for both."""
    revoked = sa.exists().where(RevokedToken.jti == payload["jti"])
    try:
        user_id = uuid.UUID(payload["sub"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, db().execute(sa.select(revoked)).scalar_one()
    row = db().execute(sa.select(User, revoked).where(User.id == user_id)).first()
    if row is None:
        return None, db().execute(sa.select(revoked)).scalar_one()
    return row[0], row[1]


def install_jwt(app: Flask) -> JWTManager:
    jwt = JWTManager(app)

    @jwt.user_lookup_loader
    def _load_user(_header: dict, payload: dict) -> User | None:
        user = g.pop("biapp_token_user", _UNREAD)  # read with the revocation check, just before
        if user is _UNREAD:
            user = _token_user(payload)[0]
        if user is None or not user.is_active:
            return None
        # A password change bumps the user's password version and so ends every session opened
        # before it, even one from the same second. A token without a version is refused.
        pwv = payload.get("pwv")
        if type(pwv) is not int or pwv != user.password_version:
            return None
        return user

    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict, payload: dict) -> bool:
        user, revoked = _token_user(payload)
        g.biapp_token_user = user
        return revoked

    def _unauthorized(message: str):
        return error_response(401, "unauthorized", message)

    jwt.unauthorized_loader(lambda reason: _unauthorized("Missing bearer token."))
    jwt.invalid_token_loader(lambda reason: _unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda h, p: _unauthorized("Token has expired; log in again."))
    jwt.revoked_token_loader(lambda h, p: _unauthorized("Token has been revoked; log in again."))
    jwt.user_lookup_error_loader(lambda h, p: _unauthorized("Token no longer valid; log in again."))
    install_session_cookies(app)  # the console's cookie: renewed while in use, CSRF refusals as 403
    return jwt


def me() -> User:
    return current_user  # type: ignore[return-value]


def login_required(*roles: str) -> Callable:
    """Require a valid token and, when roles are given, one of those roles (else 403)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            verify_jwt_in_request()
            if roles and me().role not in roles:
                raise PermissionDeniedError(f"This needs the {' or '.join(roles)} role.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def visible_to(user: User, owner_id: uuid.UUID | None, shared: bool = False) -> bool:
    return user.role == "admin" or owner_id == user.id or shared


def only_visible(query: sa.Select, model: type) -> sa.Select:
    """Narrow a list query to what the caller may see: the same rule as get_owned, in SQL."""
    user = me()
    if user.role == "admin":
        return query
    condition = model.owner_id == user.id
    if hasattr(model, "shared"):
        condition = sa.or_(condition, model.shared.is_(True))
    return query.where(condition)


def under_visible(query: sa.Select, model: type, object_id: uuid.UUID) -> sa.Select:
    """A list under one object (a report's runs, an alert's events), read in the same statement as the check
    that the caller may see that object: for anyone but an admin, rows only while the object is theirs or
    shared. An empty page then asks `check_visible` whether the object is there at all (404 or empty)."""
    if me().role == "admin":
        return query
    return query.where(sa.exists(only_visible(sa.select(model.id).where(model.id == object_id), model)))


def check_visible(model: type, object_id: uuid.UUID, *, what: str = "object") -> None:
    """As get_owned for reading, without loading the object: one indexed lookup of its owner (lists under it)."""
    columns = [model.owner_id] + ([model.shared] if hasattr(model, "shared") else [])
    row = db().execute(sa.select(*columns).where(model.id == object_id)).first()
    if row is None or not visible_to(me(), row[0], bool(row[1]) if len(row) > 1 else False):
        raise NotFoundError(f"No such {what}.")


def get_owned(model: type, object_id: uuid.UUID, *, writable: bool = False, what: str = "object"):
    """Load an object the caller may see: another user's private object is a 404.

    A shared object is readable by everyone but writable only by its owner (or an admin).
    """
    obj = db().get(model, object_id)
    user = me()
    if obj is None:
        raise NotFoundError(f"No such {what}.")
    owner = getattr(obj, "owner_id", None)
    shared = bool(getattr(obj, "shared", False))
    if not visible_to(user, owner, shared):
        raise NotFoundError(f"No such {what}.")
    if writable and not visible_to(user, owner):
        raise PermissionDeniedError(f"This {what} is shared read-only; only its owner can change it.")
    return obj
