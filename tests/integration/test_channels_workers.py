"""A report with two emails, a webhook and a Slack channel, through real `biapp worker` processes on
PostgreSQL and RabbitMQ; and a mailer SIGKILLed while a webhook receiver holds its request."""

from __future__ import annotations

import json
import signal

import pytest
from standardwebhooks.webhooks import Webhook

from shared.messaging import BrokerPublisher, build_broker
from tests.integration.channel_receivers import Receivers
from tests.integration.test_mail_helpers import ScriptedHandler, execution_state, seed_rendered, start_smtp
from tests.integration.test_pipeline_skeleton import _finished, env, system, workers  # noqa: F401 (fixtures)
from tests.support import Process, base_env, make_settings, wait_until


@pytest.fixture
def receivers():
    running = Receivers().start()
    yield running
    running.stop()


def test_a_mixed_report_reaches_two_inboxes_a_webhook_and_slack_once_each(
    system,  # noqa: F811 (fixture)
    workers,  # noqa: F811 (fixture)
    smtp_server,
    receivers,
):
    client, report, _publisher = system
    hook = receivers.script("/hook", [200])
    slack = receivers.script("/slack/T1/B1/secret", [200], body="ok")
    destinations = [
        {"kind": "email", "address": "a@example.com"},
        {"kind": "email", "address": "b@example.com"},
        {"kind": "webhook", "url": receivers.url("/hook")},
        {"kind": "slack", "webhook_url": receivers.url("/slack/T1/B1/secret")},
    ]
    updated = client.put(
        f"/api/scheduled-reports/{report['id']}",
        json={
            **{k: report[k] for k in ("name", "saved_query_id", "schedule", "formats", "subject")},
            "destinations": destinations,
        },
    )
    assert updated.status_code == 200, updated.get_json()
    signing_secret = next(d["signing_secret"] for d in updated.get_json()["destinations"] if d["kind"] == "webhook")

    execution_id = client.post(f"/api/scheduled-reports/{report['id']}/run").get_json()["execution_id"]
    execution = wait_until(lambda: _finished(client, execution_id), timeout=60, what="the run to finish")

    assert execution["status"] == "success", execution
    by_kind = sorted((d["kind"], d["target"], d["status"], d["attempts"]) for d in execution["deliveries"])
    assert by_kind == [
        ("email", "a@example.com", "sent", 1),
        ("email", "b@example.com", "sent", 1),
        ("slack", "127.0.0.1", "sent", 1),
        ("webhook", "127.0.0.1", "sent", 1),
    ]
    assert all(d["answer"] for d in execution["deliveries"])
    assert sorted(m.recipients[0] for m in smtp_server.wait_for(2)) == ["a@example.com", "b@example.com"]
    assert len(hook.received) == len(slack.received) == 1
    request = hook.received[0]
    payload = Webhook(signing_secret).verify(request["body"], {k.lower(): v for k, v in request["headers"].items()})
    assert payload["data"]["run_id"] == execution_id and payload["data"]["row_count"] == 3
    assert json.loads(slack.received[0]["body"])["blocks"]


def test_a_mailer_killed_while_a_webhook_is_in_flight_redelivers_with_the_same_webhook_id(
    amqp, pg_url, pg_session_factory, tmp_path, receivers
):
    handler = ScriptedHandler()
    controller, smtp_port = start_smtp(handler)
    hook = receivers.script("/hook", ["stall", 200], stall_s=6)
    worker_env = base_env(
        BIAPP_DATABASE_URL=pg_url, BIAPP_BROKER_URL=amqp, BIAPP_LEASE_TTL_S="3", BIAPP_WEBHOOK_TIMEOUT_S="20"
    )
    settings = make_settings(**worker_env)
    seeded = seed_rendered(
        pg_session_factory,
        settings,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        destinations=[{"kind": "webhook", "url": receivers.url("/hook")}],
    )
    first = Process(["worker", "mailer", "--processes", "1", "--threads", "1"], worker_env, log=tmp_path / "first.log")
    second = None
    try:
        BrokerPublisher(build_broker(settings)).send("deliver_report", seeded.execution_id)
        assert hook.in_flight.wait(60), first.output()
        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        second = Process(
            ["worker", "mailer", "--processes", "1", "--threads", "1"], worker_env, log=tmp_path / "second.log"
        )
        wait_until(lambda: len(hook.received) >= 2, timeout=90, what="the resumed delivery")
        wait_until(
            lambda: execution_state(pg_session_factory, seeded.execution_id)[0].status == "success",
            timeout=30,
            what="the run to close",
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
        controller.stop()

    _, deliveries = execution_state(pg_session_factory, seeded.execution_id)
    [row] = deliveries.values()
    assert row.status == "sent"
    ids = [r["headers"]["Webhook-Id"] for r in hook.received]
    assert len(ids) == 2 and ids[0] == ids[1] == row.message_id, "the receiver can drop the second copy"
