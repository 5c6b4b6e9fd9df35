"""Destinations of reports and alerts: checking them, storing their secrets, planning a run's ledger.

The API hands validated items here; what leaves is a list of `Destination` rows whose URLs,
tokens and webhook signing secrets are one Fernet-encrypted JSON document. A destination is
identified on edit by its `id`: an item that names an existing destination and gives no new
URL or token keeps the stored one (secrets are write-only, so clients cannot send them back).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.config import Settings
from shared.errors import FieldError, OutboundRefusedError
from shared.models.destinations import CHANNELS, Destination, renumbered
from shared.outbound import OutboundPolicy, is_public
from shared.security.crypto import SecretBox

MAX_URL = 2048
# Fields of an item that hold a secret, per channel (only these are encrypted).
SECRET_FIELDS = {"webhook": ("url",), "slack": ("webhook_url", "bot_token"), "teams": ("webhook_url",)}
ICONS = {"email": "mail", "webhook": "webhook", "slack": "slack", "teams": "teams"}
_SLACK_CHANNEL = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_SLACK_TOKEN = re.compile(r"xox[abpe]-[A-Za-z0-9-]{8,250}")


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent

    @property
    def display(self) -> str:
        return self.host


def parse_url(url: str, *, field: str) -> Endpoint:
    """An absolute http(s) URL without user info; FieldError naming `field` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise FieldError(field, "a URL is required")
    url = url.strip()
    if len(url) > MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise FieldError(field, f"must be a URL of at most {MAX_URL} characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FieldError(field, "is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FieldError(field, "must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise FieldError(field, "must not carry a user name or password")
    host = parts.hostname.rstrip(".").lower()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Endpoint(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def check_endpoint(endpoint: Endpoint, policy: OutboundPolicy, *, field: str) -> None:
    """The outbound policy at save time: internal addresses only when BIAPP_OUTBOUND_ALLOW lists them,
    and plain http only to such an explicitly allowed internal target (public targets need https)."""
    try:
        literal = ipaddress.ip_address(endpoint.host.strip("[]"))
    except ValueError:
        literal = None
    try:
        targets = policy.resolve(endpoint.host, endpoint.port)
    except OutboundRefusedError as exc:
        raise FieldError(field, exc.message) from None
    except (socket.gaierror, OSError):
        if literal is None and endpoint.scheme == "https":
            return  # not resolvable now: checked again, with the connection, at every send
        raise FieldError(field, f"{endpoint.host} does not resolve") from None
    if endpoint.scheme == "http":
        addresses = [ipaddress.ip_address(sockaddr[0].split("%", 1)[0]) for _family, sockaddr in targets]
        if not addresses or any(is_public(a) for a in addresses):
            raise FieldError(
                field, "must be an https:// URL (plain http only to an internal host allowed by BIAPP_OUTBOUND_ALLOW)"
            )


def check_item(item: dict, settings: Settings, *, field: str, existing: Destination | None) -> None:
    """The channel-specific rules of one destination item (its shape is the API schema's business)."""
    kind = item["kind"]
    if existing is not None and existing.kind != kind:
        raise FieldError(f"{field}.kind", "a destination cannot change its kind; remove it and add a new one")
    if kind == "webhook":
        if item.get("url") is None and existing is None:
            raise FieldError(f"{field}.url", "a webhook needs its url")
    if kind in ("slack", "teams"):
        has_url = item.get("webhook_url") is not None
        has_bot = item.get("bot_token") is not None or item.get("channel") is not None
        if kind == "teams" and has_bot:
            raise FieldError(f"{field}.bot_token", "Teams takes a Workflows webhook_url only")
        if has_url and has_bot:
            raise FieldError(f"{field}.webhook_url", "give either webhook_url or bot_token with channel, not both")
        if not has_url and not has_bot and existing is None:
            raise FieldError(
                f"{field}.webhook_url",
                "a webhook_url is required" if kind == "teams" else "give webhook_url, or bot_token with channel",
            )
        if has_bot:
            if item.get("channel") is None or not _SLACK_CHANNEL.fullmatch(item["channel"]):
                raise FieldError(f"{field}.channel", "a Slack channel id (C0123ABCD) or #name is required")
            if item.get("bot_token") is None and (existing is None or existing_secret_kind(existing) != "bot"):
                raise FieldError(f"{field}.bot_token", "a bot token is required with a channel")
            if item.get("bot_token") is not None and not _SLACK_TOKEN.fullmatch(item["bot_token"]):
                raise FieldError(f"{field}.bot_token", "must be a Slack token (xoxb-…)")
    for name in ("url", "webhook_url"):
        if item.get(name) is not None:
            check_endpoint(
                parse_url(item[name], field=f"{field}.{name}"), settings.outbound_policy, field=f"{field}.{name}"
            )


def existing_secret_kind(destination: Destination) -> str | None:
    """`bot` or `url` for a stored Slack destination, from its non-secret target."""
    if destination.kind != "slack":
        return None
    return "bot" if destination.target.startswith("#") or destination.target.startswith("channel ") else "url"


def build(
    items: list[dict], current: list[Destination], box: SecretBox, settings: Settings, *, field: str = "destinations"
) -> list[Destination]:
    """The new destination list from validated items; new webhooks get a signing secret (shown once)."""
    by_id = {d.id: d for d in current}
    result: list[Destination] = []
    for index, item in enumerate(items):
        existing = by_id.pop(item["id"], None) if item.get("id") else None
        if item.get("id") and existing is None:
            raise FieldError(f"{field}.{index}.id", "no such destination on this report or alert")
        check_item(item, settings, field=f"{field}.{index}", existing=existing)
        result.append(_apply(item, existing, box))
    return renumbered(result)


def _apply(item: dict, existing: Destination | None, box: SecretBox) -> Destination:
    kind = item["kind"]
    destination = existing or Destination(id=uuid.uuid4(), kind=kind)
    if kind == "email":
        destination.address = item["address"]
        destination.target = item["address"]
        destination.role = item.get("role") or "to"
        destination.secret_encrypted = None
        return destination
    destination.role = "to"
    destination.address = None
    stored = open_secret(box, destination) if existing is not None and existing.secret_encrypted else {}
    given = {name: item[name] for name in (*SECRET_FIELDS[kind], "channel") if item.get(name) is not None}
    if given:
        keep = {"signing_secret": stored["signing_secret"]} if "signing_secret" in stored else {}
        stored = {**keep, **given}
    if kind == "webhook" and "signing_secret" not in stored:
        stored["signing_secret"] = new_signing_secret()
        destination.signing_secret_once = stored["signing_secret"]  # for the response that creates it
    destination.secret_encrypted = box.encrypt(json.dumps(stored))
    destination.target = display_target(kind, stored)
    return destination


def display_target(kind: str, secret: dict) -> str:
    """What responses and history show: never a path, token or query, only where it goes."""
    if kind == "slack" and secret.get("bot_token"):
        return f"channel {secret.get('channel')}"
    url = secret.get("url") or secret.get("webhook_url") or ""
    try:
        return urlsplit(url).hostname or kind
    except ValueError:
        return kind


def open_secret(box: SecretBox, destination: Destination) -> dict:
    if not destination.secret_encrypted:
        return {}
    return json.loads(box.decrypt(destination.secret_encrypted, what=f"{destination.kind} destination secret"))


def rotate_signing_secret(box: SecretBox, destination: Destination) -> str:
    if destination.kind != "webhook":
        raise FieldError("destination_id", "only webhook destinations are signed")
    stored = open_secret(box, destination)
    stored["signing_secret"] = new_signing_secret()
    destination.secret_encrypted = box.encrypt(json.dumps(stored))
    return stored["signing_secret"]


def ledger_key(destination_kind: str, address: str | None, destination_id) -> str:
    """The ledger's `recipient`: the address for email, `<channel>:<destination id>` otherwise."""
    return address if destination_kind == "email" else f"{destination_kind}:{destination_id}"


def planned(destinations: list[Destination], *, trigger: str, requester=None) -> list[dict]:
    """Who a run is for, fixed when it is queued. A test run goes only to the caller's inbox."""
    if trigger == "test":
        if requester is None:
            raise ValueError("a test run needs the requesting user")
        return [
            {
                "address": requester.email,
                "kind": "to",
                "channel": "email",
                "destination_id": None,
                "target": requester.email,
            }
        ]
    seen: set[str] = set()
    plan: list[dict] = []
    # To before cc, each address once (compared case-insensitively); other channels in their order.
    ordered = sorted(destinations, key=lambda d: (d.kind == "email" and d.role == "cc", d.position))
    for destination in ordered:
        key = ledger_key(destination.kind, destination.address, destination.id)
        if key.lower() in seen:
            continue
        seen.add(key.lower())
        plan.append(
            {
                "address": key,
                "kind": destination.role if destination.kind == "email" else "to",
                "channel": destination.kind,
                "destination_id": str(destination.id) if destination.id else None,
                "target": destination.target,
            }
        )
    return plan


def channels_in(plan: list[dict]) -> set[str]:
    return {p.get("channel", "email") for p in plan}


assert set(ICONS) == set(CHANNELS)
