"""The Dockerfile, read as text: exec-form entrypoint, commands the CLI knows, a lean non-root final stage."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from services.cli import build_parser

DOCKERFILE = (Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


INSTRUCTIONS = _instructions(DOCKERFILE)
STAGES = [i for i, (op, _) in enumerate(INSTRUCTIONS) if op == "FROM"]
FINAL = INSTRUCTIONS[STAGES[-1] :]


def _one(op: str) -> str:
    values = [arg for name, arg in FINAL if name == op]
    assert len(values) == 1, f"exactly one {op} in the final stage"
    return values[0]


def test_entrypoint_is_exec_form_through_tini_to_biapp():
    entrypoint = json.loads(_one("ENTRYPOINT"))
    assert entrypoint[0].endswith("tini") and entrypoint[-1] == "biapp"
    assert "-g" not in entrypoint, "a group signal would reach dramatiq worker processes twice"


def test_default_command_is_one_the_cli_knows():
    build_parser().parse_args(json.loads(_one("CMD")))


@pytest.mark.parametrize(
    "command",
    [c for arg in [a for op, a in FINAL if op == "LABEL"] for c in re.findall(r'org\.biapp\.commands="([^"]+)"', arg)][
        0
    ].split(";"),
)
def test_every_service_command_the_image_documents_exists_in_biapp(command):
    build_parser().parse_args(shlex.split(command))


def test_the_image_documents_each_service_command():
    label = re.search(r'org\.biapp\.commands="([^"]+)"', DOCKERFILE).group(1).split(";")
    assert {"api", "scheduler", "worker renderer", "worker mailer", "db upgrade"} <= set(label)


def test_final_stage_is_slim_non_root_and_has_no_build_tools():
    assert "slim" in FINAL[0][1]
    user = _one("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0
    installs = " ".join(arg for op, arg in FINAL if op == "RUN")
    for tool in ("gcc", "build-essential", "make ", "g++", "-dev "):
        assert tool not in installs, f"{tool!r} in the final stage"
    for library in ("libpango-1.0-0", "libpangoft2-1.0-0", "tini"):
        assert library in installs, f"WeasyPrint / init needs {library}"
    copies = [arg for op, arg in FINAL if op == "COPY"]
    assert all(c.startswith("--from=") for c in copies), "the final stage only copies from the build stage"
    assert len(STAGES) >= 2, "multi-stage"


def test_writable_paths_point_under_tmp_for_a_read_only_root():
    env = " ".join(arg for op, arg in FINAL if op == "ENV")
    for name in ("HOME=/tmp", "dramatiq_prom_db=/tmp/", "PYTHONDONTWRITEBYTECODE=1"):
        assert name in env
