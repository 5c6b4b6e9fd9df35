"""The HTTP client every webhook-like channel uses: redirects not followed, Retry-After read, outcomes classified."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.mailer.channels.base import Refused
from services.mailer.channels.http import HttpPoster, classify, retry_after
from shared.outbound import OutboundPolicy, parse_entry
from tests.integration.channel_receivers import Receivers

LOOPBACK = OutboundPolicy((parse_entry("127.0.0.0/8"),))


@pytest.fixture
def receivers():
    running = Receivers().start()
    yield running
    running.stop()


def test_a_redirect_is_reported_and_never_followed(receivers):
    elsewhere = receivers.script("/elsewhere", [200])
    receivers.script("/hook", [(302, {"Location": receivers.url("/elsewhere")})])
    answer = HttpPoster(LOOPBACK, timeout_s=2).post_json(receivers.url("/hook"), {"a": 1})
    with pytest.raises(Refused) as refused:
        classify(answer)
    assert refused.value.permanent and "not followed" in refused.value.message
    assert elsewhere.received == []


def test_a_target_outside_the_policy_is_refused_without_a_connection(receivers):
    hook = receivers.script("/hook", [200])
    with pytest.raises(Refused) as refused:
        HttpPoster(OutboundPolicy(()), timeout_s=2).post_json(receivers.url("/hook"), {"a": 1})
    assert refused.value.permanent and "BIAPP_OUTBOUND_ALLOW" in refused.value.message
    assert hook.received == []


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30", 30.0), ("0", 0.0), (None, None), ("soon", None), ("Mon, 02 Mar 2026 08:01:00 GMT", 60.0)],
)
def test_retry_after_in_seconds_or_as_a_date(value, seconds):
    assert retry_after(value, now=datetime(2026, 3, 2, 8, 0, tzinfo=UTC)) == seconds
