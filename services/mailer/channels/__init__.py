"""Delivery channels: one module per kind, one line each in the registry below.

A fifth channel is a module with a class that has `kind` and `open(job)` returning a session
with `send(target)` and `close()` (services/mailer/channels/base.py), a line here, and its
kind in shared.models.destinations.CHANNELS with its fields in the API's destination schema.
"""

from __future__ import annotations

from services.mailer.channels.base import Channel
from services.mailer.channels.email import EmailChannel
from services.mailer.channels.http import HttpPoster
from services.mailer.channels.slack import SlackChannel
from services.mailer.channels.teams import TeamsChannel
from services.mailer.channels.webhook import WebhookChannel
from services.mailer.transport import Transport
from shared.config import Settings

REGISTRY = {
    "email": lambda settings, transport, poster: EmailChannel(transport),
    "webhook": lambda settings, transport, poster: WebhookChannel(poster),
    "slack": lambda settings, transport, poster: SlackChannel(
        poster, api_url=settings.slack_api_url, timeout_s=settings.webhook_timeout_s
    ),
    "teams": lambda settings, transport, poster: TeamsChannel(poster),
}


def build_channels(settings: Settings, transport: Transport) -> dict[str, Channel]:
    poster = HttpPoster(settings.outbound_policy, timeout_s=settings.webhook_timeout_s)
    return {kind: make(settings, transport, poster) for kind, make in REGISTRY.items()}
