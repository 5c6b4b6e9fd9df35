"""HTTP posts to user-given URLs: pinned to the address the outbound policy checked, no redirects.

The connection goes to exactly the address that was resolved and checked (a second DNS answer
cannot rebind it to 127.0.0.1), TLS still verifies the certificate for the URL's host name, a
redirect is never followed (it is reported as the answer), and the response body read is capped.
The answer classifies the outcome the same way for every HTTP channel: 2xx accepted; 408, 425,
429 and 5xx transient (429 and 503 honour Retry-After); any other status permanent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, NewConnectionError

from services.mailer.channels.base import Accepted, Refused, short
from shared.destinations import parse_url
from shared.errors import FieldError, OutboundRefusedError
from shared.outbound import OutboundPolicy

# urllib3's and slack-sdk's debug lines print the request path and the payload, and a webhook's or
# Slack's URL carries its secret in the path: those loggers never go below INFO, whatever the level.
for _name in ("urllib3", "slack_sdk"):
    logging.getLogger(_name).setLevel(logging.INFO)

MAX_BODY = 64 * 1024
TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "BIApp-Reports/1 (+delivery)"


def _pinned(base: type, policy: OutboundPolicy) -> type:
    class Pinned(base):  # type: ignore[misc, valid-type]
        def _new_conn(self) -> socket.socket:
            try:
                return policy.connect(self._dns_host, self.port, self.timeout)
            except OutboundRefusedError:
                raise
            except OSError as exc:
                raise NewConnectionError(self, f"could not connect: {exc}") from exc

    return Pinned


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    headers: dict

    @property
    def text(self) -> str:
        return short(f"{self.status} {self.body}".strip())


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class HttpPoster:
    """POST JSON (or given bytes) to a URL under the outbound policy, with connect and read timeouts."""

    def __init__(self, policy: OutboundPolicy, *, timeout_s: float):
        self.policy = policy
        self.timeout_s = timeout_s

    def post(self, url: str, body: bytes, headers: dict) -> HttpAnswer:
        try:
            endpoint = parse_url(url, field="url")
        except FieldError as exc:
            raise Refused(f"invalid URL: {exc.errors.get('url', ['invalid'])[0]}", permanent=True) from None
        if endpoint.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(endpoint.host, endpoint.port, maxsize=1, cert_reqs="CERT_REQUIRED")
            pool.ConnectionCls = _pinned(HTTPSConnection, self.policy)
        else:
            pool = urllib3.HTTPConnectionPool(endpoint.host, endpoint.port, maxsize=1)
            pool.ConnectionCls = _pinned(HTTPConnection, self.policy)
        timeout = urllib3.Timeout(connect=min(10.0, self.timeout_s), read=self.timeout_s)
        try:
            response = pool.urlopen(
                "POST",
                endpoint.path,
                body=body,
                headers={"User-Agent": USER_AGENT, **headers},
                redirect=False,
                retries=False,
                timeout=timeout,
                preload_content=False,
            )
            try:
                raw = response.read(MAX_BODY, decode_content=True)
            finally:
                response.release_conn()
        except OutboundRefusedError as exc:
            raise Refused(exc.message, permanent=True) from None
        except (HTTPError, OSError) as exc:
            # Timeouts and refused or dropped connections: the far end may be back later.
            raise Refused(f"{type(exc).__name__}: {_reason(exc)}", permanent=False) from None
        finally:
            pool.close()
        return HttpAnswer(response.status, raw.decode("utf-8", "replace"), dict(response.headers))

    def post_json(self, url: str, payload: dict, headers: dict | None = None) -> HttpAnswer:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return self.post(url, body, {"Content-Type": "application/json", **(headers or {})})


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return short(str(reason or exc), 200)


def classify(answer: HttpAnswer) -> Accepted:
    """Accepted for 2xx; Refused (transient or permanent) for anything else."""
    if 200 <= answer.status < 300:
        return Accepted(answer.text)
    if 300 <= answer.status < 400:
        where = answer.headers.get("Location") or answer.headers.get("location") or "elsewhere"
        raise Refused(f"redirect to {short(where, 200)} not followed", permanent=True, answer=answer.text)
    transient = answer.status in TRANSIENT or answer.status >= 500
    wait = retry_after(answer.headers.get("Retry-After") or answer.headers.get("retry-after"))
    raise Refused(
        f"HTTP {answer.status}", permanent=not transient, answer=answer.text, retry_after_s=wait if transient else None
    )
