"""Webhook: a signed JSON document per run or alert event (Standard Webhooks).

Headers `webhook-id` (the ledger row: the same on every retry, so receivers can drop
duplicates), `webhook-timestamp` (seconds) and `webhook-signature` (`v1,` + base64 of
HMAC-SHA256 over `id.timestamp.body` with the destination's `whsec_` secret). The body:

    {"type": "report.delivered", "timestamp": "…", "data": {…}}

documented in docs/user-guide.md and the OpenAPI document (WebhookPayload).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime

from services.mailer.channels.base import Accepted, Job, Refused, Target
from services.mailer.channels.http import HttpPoster, classify
from services.mailer.notification import Notification

SECTION_ROWS = 10


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def payload(n: Notification, now: datetime) -> dict:
    """The JSON body every webhook receives (see WebhookPayloadSchema in the API's OpenAPI)."""
    data = {
        n.object_kind: {"id": n.object_id, "name": n.name},
        "run_id": n.run_id,
        "status": n.status,
        "subject": n.subject,
        "summary": n.headline,
        "timezone": n.timezone,
        "scheduled_for": _iso(n.scheduled_for),
        "started_at": _iso(n.started_at),
        "finished_at": _iso(n.finished_at),
        "row_count": n.row_count,
        "sections": [
            {
                "title": s.title,
                "row_count": s.row_count,
                "columns": list(s.columns),
                "rows": [list(r) for r in s.rows[:SECTION_ROWS]],
            }
            for s in n.sections
        ],
        "files": [
            {"filename": f.filename, "format": f.format, "size": f.size, "url": f.url, "expires_at": _iso(f.expires_at)}
            for f in n.files
        ],
        "open_url": n.open_url,
        "error": n.error,
    }
    if n.facts:
        data["facts"] = dict(n.facts)
    return {"type": n.type, "timestamp": now.isoformat(), "data": data}


def webhook_id(target: Target) -> str:
    return f"msg_{target.delivery_id.hex}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookChannel:
    kind = "webhook"

    def __init__(self, poster: HttpPoster):
        self.poster = poster

    def open(self, job: Job) -> _WebhookSession:
        return _WebhookSession(self.poster, job)


class _WebhookSession:
    def __init__(self, poster: HttpPoster, job: Job):
        self.poster = poster
        self.job = job
        self.body = json.dumps(payload(job.notification, job.now), separators=(",", ":"), ensure_ascii=False).encode()

    def send(self, target: Target) -> Accepted:
        url, secret = target.secret.get("url"), target.secret.get("signing_secret")
        if not url or not secret:
            raise Refused("the webhook has no URL or signing secret", permanent=True)
        msg_id = webhook_id(target)
        timestamp = int(time.time())  # real time: receivers refuse stale timestamps, so each attempt signs anew
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, self.body),
        }
        accepted = classify(self.poster.post(url, self.body, headers))
        return Accepted(accepted.answer, message_id=msg_id)

    def close(self) -> None:
        pass
