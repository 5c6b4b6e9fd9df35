"""Real local HTTP receivers for webhook, Slack and Teams tests (pytest-httpserver, threaded).

This module holds no tests; the channel test modules import from it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass
class Script:
    """Answers in order (the last one repeats): an int status, (status, headers), or "stall" (sleeps first)."""

    answers: list = field(default_factory=lambda: [200])
    stall_s: float = 4.0
    received: list = field(default_factory=list)
    in_flight: threading.Event = field(default_factory=threading.Event)

    def next(self):
        index = min(len(self.received) - 1, len(self.answers) - 1)
        return self.answers[index]


class Receivers:
    """One threaded HTTP server; each path answers from its own Script and records what it got."""

    def __init__(self):
        self.server = HTTPServer(host="127.0.0.1", threaded=True)
        self.scripts: dict[str, Script] = {}

    def start(self) -> Receivers:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def script(self, path: str, answers: list, *, body: dict | str | None = None, stall_s: float = 4.0) -> Script:
        script = Script(list(answers), stall_s=stall_s)
        self.scripts[path] = script

        def handle(request: Request) -> Response:
            script.received.append(
                {"headers": dict(request.headers), "body": request.get_data(), "at": time.monotonic()}
            )
            answer = script.next()
            if answer == "stall":
                script.in_flight.set()
                time.sleep(script.stall_s)
                answer = 200
            status, headers = (answer, {}) if isinstance(answer, int) else answer
            payload = body if status < 300 else {"ok": False, "error": f"status {status}"}
            if isinstance(payload, dict):
                return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")
            return Response(payload or "ok", status=status, headers=headers)

        self.server.expect_request(path).respond_with_handler(handle)
        return script
