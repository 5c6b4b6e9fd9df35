"""Tokens, and the browser console's session: the same JWT as a bearer token, kept in an HttpOnly cookie.

Integrators send `Authorization: Bearer …` as before. The console never sees its token: `POST
/api/auth/session` puts it in an HttpOnly, SameSite=Lax cookie (Secure over https) sent only to `/api/`.
A second, readable cookie carries the token's CSRF value; the console sends it back as `X-CSRF-TOKEN`
on every POST, PUT, PATCH and DELETE, and flask-jwt-extended refuses a cookie-authenticated write
without it (double submit). A bearer token is never checked for CSRF: a browser does not attach it
by itself. Tokens from either place are revoked the same way (their `jti`, services/api/security.py).
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, request
from flask_jwt_extended import create_access_token, current_user, get_csrf_token, get_jwt, get_jwt_request_location
from flask_jwt_extended.exceptions import CSRFError

from services.api.errors import error_response
from services.api.runtime import runtime
from shared.config import Settings

ACCESS_COOKIE = "biapp_session"
CSRF_COOKIE = "biapp_csrf"
CSRF_HEADER = "X-CSRF-TOKEN"
# The token only ever travels to the API; the CSRF value must be readable by the console's pages at `/`.
ACCESS_COOKIE_PATH = "/api/"
CSRF_COOKIE_PATH = "/"


def jwt_config(settings: Settings) -> dict:
    """flask-jwt-extended settings: bearer headers first, then the console's cookie."""
    return {
        "JWT_TOKEN_LOCATION": ["headers", "cookies"],
        "JWT_ACCESS_COOKIE_NAME": ACCESS_COOKIE,
        "JWT_ACCESS_CSRF_COOKIE_NAME": CSRF_COOKIE,
        "JWT_ACCESS_CSRF_HEADER_NAME": CSRF_HEADER,
        "JWT_ACCESS_COOKIE_PATH": ACCESS_COOKIE_PATH,
        "JWT_ACCESS_CSRF_COOKIE_PATH": CSRF_COOKIE_PATH,
        "JWT_COOKIE_SAMESITE": "Lax",
        "JWT_COOKIE_SECURE": settings.public_url.startswith("https://"),
        "JWT_COOKIE_CSRF_PROTECT": True,
        "JWT_CSRF_CHECK_FORM": False,
    }


def access_token_for(user) -> str:
    # "pwv": a password change bumps the user's version, so every token issued before it is refused.
    claims = {"role": user.role, "pwv": user.password_version}
    return create_access_token(identity=str(user.id), additional_claims=claims)


def _secure() -> bool:
    # Secure when this request came over https, or the public address is https (TLS ends at a proxy).
    return request.is_secure or bool(current_app.config["JWT_COOKIE_SECURE"])


def set_session_cookies(response: Response, token: str) -> Response:
    max_age = runtime().settings.jwt_expires_s
    secure = _secure()
    response.set_cookie(
        ACCESS_COOKIE, token, max_age=max_age, path=ACCESS_COOKIE_PATH, secure=secure, httponly=True, samesite="Lax"
    )
    response.set_cookie(
        CSRF_COOKIE,
        get_csrf_token(token),
        max_age=max_age,
        path=CSRF_COOKIE_PATH,
        secure=secure,
        httponly=False,  # the console reads it to send it back as X-CSRF-TOKEN
        samesite="Lax",
    )
    return response


def clear_session_cookies(response: Response) -> Response:
    secure = _secure()
    response.delete_cookie(ACCESS_COOKIE, path=ACCESS_COOKIE_PATH, secure=secure, httponly=True, samesite="Lax")
    response.delete_cookie(CSRF_COOKIE, path=CSRF_COOKIE_PATH, secure=secure, samesite="Lax")
    return response


def _sets_session_cookie(response: Response) -> bool:
    return any(value.startswith(f"{ACCESS_COOKIE}=") for value in response.headers.getlist("Set-Cookie"))


def _renew_session_cookie(response: Response) -> Response:
    """A console in use stays signed in: past half its lifetime, a cookie token is replaced on a GET.

    Only on successful GETs, so a logout (POST or DELETE) can never be answered with a fresh cookie.
    """
    if request.method != "GET" or response.status_code >= 400 or get_jwt_request_location() != "cookies":
        return response
    if current_user is None or _sets_session_cookie(response):
        return response
    lifetime = runtime().settings.jwt_expires_s
    remaining = get_jwt()["exp"] - time.time()  # flask-jwt-extended stamps tokens with the real clock
    if remaining < lifetime / 2:
        set_session_cookies(response, access_token_for(current_user))
    return response


def _csrf_refused(exc: CSRFError):
    return error_response(
        403,
        "csrf_failed",
        f"This request came with the session cookie but without a matching {CSRF_HEADER} header "
        f"(the value of the {CSRF_COOKIE} cookie); nothing was changed.",
    )


def install_session_cookies(app: Flask) -> None:
    app.after_request(_renew_session_cookie)
    app.register_error_handler(CSRFError, _csrf_refused)
