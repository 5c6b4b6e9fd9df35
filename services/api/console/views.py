"""The web console: static files only (one HTML page, ES modules, one stylesheet), served at `/`.

Everything it shows comes from the public REST API under /api (docs/architecture.md says why). Its
pages run under a strict Content-Security-Policy: no inline script or style, nothing from elsewhere.
"""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("console", __name__, static_folder="static", static_url_path="/console/static")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)


@bp.get("/")
def index() -> Response:
    response = bp.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    # No build step, so no hashed file names: the browser revalidates (ETag) and a new version shows at once.
    response.headers["Cache-Control"] = "no-cache"
    return response
