"""The unsubscribe pages: self-contained HTML (no script, no external asset) under a strict CSP.

The only style is inline and allowed by its hash; the only form posts back to the same URL.
Every value shown (the report's name, the address) is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from flask import Response

_STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;"
    "background:#f4f5f7}"
    "main{max-width:32rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.15)}"
    "h1{font-size:1.4rem;margin:0 0 1rem}"
    "button{font:inherit;font-weight:600;padding:.6rem 1.4rem;border:0;border-radius:6px;"
    "background:#1f4fd1;color:#fff;cursor:pointer}"
    "button:focus-visible{outline:3px solid #111;outline-offset:3px}"
    ".note{color:#4a4a4a;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def _page(title: str, body: str, status: int) -> Response:
    html = _PAGE.format(title=escape(title), style=_STYLE, body=body)
    response = Response(html, status=status, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL is the token
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def confirm(report_name: str, address: str) -> Response:
    """What a GET shows: nothing changes until the button is pressed (link scanners only GET)."""
    body = (
        f"<p><strong>{escape(address)}</strong> will no longer receive the report "
        f"<strong>{escape(report_name)}</strong> by email.</p>\n"
        '<form method="post">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>\n"
        '<p class="note">The report\'s owner sees who unsubscribed and can add you back.</p>'
    )
    return _page("Unsubscribe from this report?", body, 200)


def done(report_name: str, address: str) -> Response:
    body = (
        f"<p><strong>{escape(address)}</strong> will no longer receive the report "
        f"<strong>{escape(report_name)}</strong>.</p>\n"
        '<p class="note">Changed your mind? Ask the report\'s owner to add you back.</p>'
    )
    return _page("You are unsubscribed", body, 200)


def invalid() -> Response:
    body = "<p>The link may have been cut or changed. Open it again from the email, whole.</p>"
    return _page("This unsubscribe link is not valid", body, 404)


def report_gone() -> Response:
    body = "<p>This report was deleted, so you will not receive it again. There is nothing to unsubscribe from.</p>"
    return _page("This report no longer exists", body, 410)
