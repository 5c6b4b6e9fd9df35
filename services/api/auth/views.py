"""Login, logout, who am I, password change and (optional) self-signup; the console's cookie session."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from flask import after_this_request, request
from flask_jwt_extended import get_jwt, get_jwt_request_location, verify_jwt_in_request
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException
from flask_limiter.util import get_remote_address
from jwt import PyJWTError

from services.api.auth.schemas import (
    LoginSchema,
    PasswordChangeSchema,
    RegisterSchema,
    TokenSchema,
    UserSchema,
)
from services.api.auth.sessions import access_token_for, clear_session_cookies, set_session_cookies
from services.api.limits import limiter
from services.api.parsing import Blueprint, text_problem
from services.api.runtime import db, runtime
from services.api.security import login_required, me
from shared import users
from shared.errors import NotFoundError

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Log in and manage your own account")


def _login_email() -> str:
    """The email a login attempt names, normalised; "" when the body has none (validation answers that)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly nested: the depth check answers 400
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or text_problem(email):
        return ""  # not an address at all (a lone surrogate cannot even be hashed): validation answers 422
    return users.normalise_email(email)


def _address_key() -> str:
    # The socket's peer. Behind a reverse proxy that is the proxy: X-Forwarded-For is not trusted.
    return f"login-address:{get_remote_address()}"


def _pair_key() -> str:
    # Hashed so that a long or odd email cannot make a long or odd storage key.
    email = hashlib.sha256(_login_email().encode()).hexdigest()[:32]
    return f"login-pair:{get_remote_address()}:{email}"


def _failed(response) -> bool:
    # Only failed attempts count: a busy office behind one address can still log in.
    return response.status_code == 401


def _issue_token(user) -> dict:
    token = access_token_for(user)
    if get_jwt_request_location() == "cookies":  # the console changed its password: its cookie follows
        after_this_request(lambda response: set_session_cookies(response, token))
    return {"access_token": token, "token_type": "Bearer", "expires_in": runtime().settings.jwt_expires_s}


@blp.route("/login", methods=["POST"])
# Failed logins are limited per (address, email) pair (BIAPP_LOGIN_RATE_LIMIT: guessing one password) and,
# more loosely, per client address (BIAPP_LOGIN_ADDRESS_RATE_LIMIT: spraying many accounts); never per email
# alone, or anyone could lock an owner out of her account by failing from elsewhere.
@limiter.limit(lambda: runtime().settings.login_address_rate_limit, key_func=_address_key, deduct_when=_failed)
@limiter.limit(lambda: runtime().settings.login_rate_limit, key_func=_pair_key, deduct_when=_failed)
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
def login(body):
    """Exchange email and password for a bearer token."""
    session = db()
    user = users.authenticate(session, body["email"], body["password"])
    session.commit()
    return _issue_token(user)


def _revoke_current_token() -> None:
    claims = get_jwt()
    session = db()
    users.revoke_token(session, jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC))
    session.commit()


@blp.route("/logout", methods=["POST"])
@login_required()
@blp.response(204)
def logout():
    """Revoke the token used for this request (a bearer token, or the console's session cookie)."""
    _revoke_current_token()
    if get_jwt_request_location() == "cookies":
        after_this_request(clear_session_cookies)


_SESSION_COOKIES = {
    "Set-Cookie": {
        "description": "biapp_session (the token: HttpOnly, SameSite=Lax, Path=/api/, Secure over https) and "
        "biapp_csrf (readable: send its value as X-CSRF-TOKEN on POST, PUT, PATCH and DELETE)",
        "schema": {"type": "string"},
    }
}


@blp.route("/session", methods=["POST"])
@limiter.limit(lambda: runtime().settings.login_address_rate_limit, key_func=_address_key, deduct_when=_failed)
@limiter.limit(lambda: runtime().settings.login_rate_limit, key_func=_pair_key, deduct_when=_failed)
@blp.arguments(LoginSchema)
@blp.response(200, UserSchema, headers=_SESSION_COOKIES)
def open_session(body):
    """Log in for a browser (the web console): the token goes into an HttpOnly cookie, never into the body.

    The same rate limits as /login apply. Integrators keep using /login and a bearer token.
    """
    session = db()
    user = users.authenticate(session, body["email"], body["password"])
    session.commit()
    token = access_token_for(user)
    after_this_request(lambda response: set_session_cookies(response, token))
    return user


@blp.route("/session", methods=["DELETE"])
@blp.response(204)
def close_session():
    """Log out of the browser session: its token is revoked and both cookies are removed.

    Needs X-CSRF-TOKEN like any other change; a session that has already ended just loses its cookies.
    """
    try:
        verify_jwt_in_request(locations=["cookies"])
    except CSRFError:
        raise
    except (JWTExtendedException, PyJWTError):
        pass  # no cookie, or its token expired, was revoked or belongs to a removed user: nothing to revoke
    else:
        _revoke_current_token()
    after_this_request(clear_session_cookies)


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
