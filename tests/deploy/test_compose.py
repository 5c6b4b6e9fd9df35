"""docker-compose.yml parses, and every BIApp service in it runs a command `biapp` knows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.cli import build_parser
from shared.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BIAPP = {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("biapp-reports")}


def test_compose_runs_the_four_services_a_migration_and_the_backing_services():
    assert {"api", "scheduler", "renderer", "mailer", "migrate"} <= set(BIAPP)
    assert {"postgres", "rabbitmq", "mailpit"} <= set(SERVICES)
    assert "15672:15672" in SERVICES["rabbitmq"]["ports"], "RabbitMQ management UI"
    assert SERVICES["rabbitmq"]["image"].endswith("-management")
    assert any(p.startswith("8025:") for p in SERVICES["mailpit"]["ports"]), "the mail catcher's web UI"


@pytest.mark.parametrize("name", sorted(BIAPP))
def test_every_biapp_service_names_a_command_that_exists(name):
    command = BIAPP[name]["command"]
    assert isinstance(command, list), "exec form: a list, so no shell sits between Docker and biapp"
    args = build_parser().parse_args(command)  # SystemExit for an unknown command or option
    assert callable(args.func)
    assert "entrypoint" not in BIAPP[name], "the image's ENTRYPOINT (tini -- biapp) runs the command"


@pytest.mark.parametrize("name", sorted(BIAPP))
def test_every_biapp_service_gets_valid_settings_and_builds_the_one_image(name):
    service = BIAPP[name]
    load_settings({k: str(v) for k, v in service["environment"].items()})
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve().exists()
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]


def test_long_running_services_have_health_checks_and_start_after_the_migration():
    for name in ("api", "scheduler", "renderer", "mailer"):
        service = BIAPP[name]
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert BIAPP["migrate"]["command"] == ["db", "upgrade"]
    assert BIAPP["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("postgres", "rabbitmq", "mailpit"):
        assert "healthcheck" in SERVICES[name]


def _seconds(value: str) -> int:
    return int(value.rstrip("s"))


def test_workers_get_more_time_to_stop_than_their_time_limit():
    env = BIAPP["renderer"]["environment"]
    assert _seconds(BIAPP["renderer"]["stop_grace_period"]) > int(env["BIAPP_RENDER_TIME_LIMIT_S"]) + 30
    assert _seconds(BIAPP["mailer"]["stop_grace_period"]) > int(env["BIAPP_MAIL_TIME_LIMIT_S"]) + 30
