"""Microsoft Teams: an Adaptive Card posted to a Workflows webhook URL (which answers 202 Accepted)."""

from __future__ import annotations

from services.mailer.channels.base import Accepted, Job, Refused, Target
from services.mailer.channels.http import HttpPoster, classify
from services.mailer.channels.teams_card import teams_message


class TeamsChannel:
    kind = "teams"

    def __init__(self, poster: HttpPoster):
        self.poster = poster

    def open(self, job: Job) -> _TeamsSession:
        return _TeamsSession(self.poster, job)


class _TeamsSession:
    def __init__(self, poster: HttpPoster, job: Job):
        self.poster = poster
        self.message = teams_message(job.notification)

    def send(self, target: Target) -> Accepted:
        url = target.secret.get("webhook_url")
        if not url:
            raise Refused("the Teams destination has no webhook URL", permanent=True)
        return classify(self.poster.post_json(url, self.message))

    def close(self) -> None:
        pass
