"""Signed download links from emails: one file, no login, until the link expires."""

from __future__ import annotations

from services.api.executions.views import stream_artifact
from services.api.parsing import Blueprint
from services.api.runtime import db, runtime
from shared import links
from shared.errors import GoneError
from shared.models import Artifact

blp = Blueprint("links", __name__, url_prefix=links.PATH_PREFIX, description="Download links sent in emails")


@blp.route("/<string:token>", methods=["GET"])
@blp.doc(security=[])
@blp.response(200, {"format": "binary", "type": "string"}, content_type="application/octet-stream")
@blp.alt_response(404, description="not a valid link")
@blp.alt_response(410, description="the link or the file has expired")
def download(token: str):
    """Download the file a signed link names (no login; 410 once the link or the file expired)."""
    artifact_id = links.verify(runtime().settings, token, now=runtime().clock.now())
    artifact = db().get(Artifact, artifact_id)
    if artifact is None:
        raise GoneError("This file has expired and was removed.")
    return stream_artifact(artifact)
