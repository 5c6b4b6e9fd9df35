"""Login, logout, who am I, password change and (optional) self-signup."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request
from flask_jwt_extended import create_access_token, get_jwt
from flask_smorest import Blueprint

from services.api.auth.schemas import (
    LoginSchema,
    PasswordChangeSchema,
    RegisterSchema,
    TokenSchema,
    UserSchema,
)
from services.api.limits import limiter
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared import users
from shared.errors import NotFoundError

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Log in and manage your own account")


def _login_key() -> str:
    body = request.get_json(silent=True) or {}
    email = str(body.get("email", "")).strip().lower()
    return f"login:{email}"


def _failed(response) -> bool:
    # Only failed attempts count: a busy office behind one address can still log in.
    return response.status_code == 401


def _issue_token(user) -> dict:
    settings = runtime().settings
    token = create_access_token(identity=str(user.id), additional_claims={"role": user.role})
    return {"access_token": token, "token_type": "Bearer", "expires_in": settings.jwt_expires_s}


@blp.route("/login", methods=["POST"])
@limiter.limit(lambda: runtime().settings.login_rate_limit, deduct_when=_failed)
@limiter.limit(lambda: runtime().settings.login_rate_limit, key_func=_login_key, deduct_when=_failed)
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
def login(body):
    """Exchange email and password for a bearer token."""
    session = db()
    user = users.authenticate(session, body["email"], body["password"])
    session.commit()
    return _issue_token(user)


@blp.route("/logout", methods=["POST"])
@login_required()
@blp.response(204)
def logout():
    """Revoke the token used for this request."""
    claims = get_jwt()
    session = db()
    users.revoke_token(session, jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC))
    session.commit()


@blp.route("/me", methods=["GET"])
@login_required()
@blp.response(200, UserSchema)
def whoami():
    return me()


@blp.route("/password", methods=["POST"])
@login_required()
@blp.arguments(PasswordChangeSchema)
@blp.response(200, TokenSchema)
def change_password(body):
    """Change your password; every older token stops working, a fresh one is returned."""
    session = db()
    user = me()
    users.change_password(
        session, user, current=body["current_password"], new=body["new_password"], now=runtime().clock.now()
    )
    session.commit()
    return _issue_token(user)


@blp.route("/register", methods=["POST"])
@limiter.limit(lambda: runtime().settings.login_rate_limit)
@blp.arguments(RegisterSchema)
@blp.response(201, UserSchema)
def register(body):
    """Create a viewer account; only when BIAPP_ALLOW_SIGNUP is true."""
    if not runtime().settings.allow_signup:
        raise NotFoundError("Self-signup is disabled.")
    session = db()
    user = users.create_user(session, email=body["email"], password=body["password"], name=body.get("name"))
    session.commit()
    return user
