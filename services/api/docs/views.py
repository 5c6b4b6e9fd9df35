"""Interactive API docs at /api/docs, from files installed with the package: no CDN, works offline.

Swagger UI's own files come from the swagger-ui-bundle package (Swagger UI's dist folder as a wheel); the
page and its start-up script are served here. Neither holds an inline script, so the page runs under a
strict Content-Security-Policy, and the validator badge (which would call validator.swagger.io) is off.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_from_directory, url_for
from markupsafe import escape
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("api_docs_ui", __name__, url_prefix="/api/docs")

# Only Swagger UI's runtime files are served, never the rest of the package's folder.
ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui.css.map",
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.map",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
START_JS = """\
// Starts Swagger UI on the page's container; the OpenAPI document's URL is the container's data-spec-url.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def _page() -> str:
    def asset(name: str) -> str:
        return escape(url_for("api_docs_ui.asset", name=name))

    spec = escape(url_for("api-docs.openapi_json"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>BIApp Reports API</title>
  <link rel="icon" type="image/png" href="{asset("favicon-32x32.png")}">
  <link rel="stylesheet" href="{asset("swagger-ui.css")}">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec}"></div>
  <script src="{asset("swagger-ui-bundle.js")}"></script>
  <script src="{escape(url_for("api_docs_ui.start"))}"></script>
</body>
</html>
"""


@bp.get("")
@bp.get("/")
def page() -> Response:
    """Swagger UI for /api/openapi.json."""
    response = Response(_page(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    return response


@bp.get("/start.js")
def start() -> Response:
    return Response(START_JS, mimetype="text/javascript")


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    response = send_from_directory(swagger_ui_path, name, max_age=86400)
    if name.endswith(".js"):
        response.mimetype = "text/javascript"
    return response
