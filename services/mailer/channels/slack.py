"""Slack: a Block Kit message through an incoming webhook, or through the Web API with a bot token.

An incoming-webhook URL is a user-given URL, so it is posted through the pinned HTTP client
under the outbound policy. A bot token posts with the official slack-sdk `WebClient` to
BIAPP_SLACK_API_URL (chat.postMessage; the run's chart images are uploaded first with
files_upload_v2 and shown in the message by file id). Slack's own error codes decide permanent against transient.
"""

from __future__ import annotations

import json
import logging
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from services.mailer.channels.base import Accepted, Job, Refused, Target, short
from services.mailer.channels.http import HttpPoster, classify, retry_after
from services.mailer.channels.slack_message import slack_message

log = logging.getLogger(__name__)

# Slack Web API errors worth another try later; every other error code is final for that destination.
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackChannel:
    kind = "slack"

    def __init__(self, poster: HttpPoster, *, api_url: str, timeout_s: float):
        self.poster = poster
        self.api_url = api_url
        self.timeout_s = timeout_s

    def open(self, job: Job) -> _SlackSession:
        return _SlackSession(self, job)


class _SlackSession:
    def __init__(self, channel: SlackChannel, job: Job):
        self.channel = channel
        self.job = job

    def send(self, target: Target) -> Accepted:
        if target.secret.get("bot_token"):
            return self._post_as_bot(target.secret["bot_token"], target.secret.get("channel") or "")
        url = target.secret.get("webhook_url")
        if not url:
            raise Refused("the Slack destination has no webhook URL or bot token", permanent=True)
        return classify(self.channel.poster.post_json(url, slack_message(self.job.notification)))

    def close(self) -> None:
        pass

    def _client(self, token: str) -> WebClient:
        return WebClient(token=token, base_url=self.channel.api_url, timeout=int(self.channel.timeout_s))

    def _post_as_bot(self, token: str, channel: str) -> Accepted:
        client = self._client(token)
        try:
            files = tuple(self._upload(client, index, png) for index, png in enumerate(self.job.images))
            message = slack_message(self.job.notification, image_files=tuple(f for f in files if f))
            response = client.chat_postMessage(channel=channel, text=message["text"], blocks=message["blocks"])
        except SlackApiError as exc:
            raise _refusal(exc) from None
        except (SlackClientError, URLError, OSError, TimeoutError) as exc:
            raise Refused(f"Slack did not answer: {short(str(exc), 200)}", permanent=False) from None
        return Accepted(short(f"{response.status_code} ok ts={response.get('ts')} channel={response.get('channel')}"))

    def _upload(self, client: WebClient, index: int, png: bytes) -> str | None:
        """Upload one chart (not shared to a channel on its own); the message shows it by its file id."""
        upload = client.files_upload_v2(content=png, filename=f"chart-{index + 1}.png", title=f"Chart {index + 1}")
        files = upload.get("files") or [upload.get("file") or {}]
        return (files[0] or {}).get("id") or None


def _refusal(exc: SlackApiError) -> Refused:
    response = exc.response
    code = response.get("error") if isinstance(response.data, dict) else None
    status = response.status_code
    answer = f"{status} {json.dumps(response.data) if isinstance(response.data, dict) else response.data}"
    transient = code in TRANSIENT_ERRORS or status == 429 or status >= 500
    wait = retry_after(response.headers.get("Retry-After") or response.headers.get("retry-after"))
    return Refused(f"Slack: {code or status}", permanent=not transient, answer=answer, retry_after_s=wait)
