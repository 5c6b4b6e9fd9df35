"""The clock, behind a protocol so tests can freeze time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import available_timezones


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests: stands still until moved."""

    def __init__(self, at: datetime):
        self._at = at

    def now(self) -> datetime:
        return self._at

    def advance(self, **delta: float) -> None:
        self._at += timedelta(**delta)

    def set(self, at: datetime) -> None:
        self._at = at


_UTC_ALIASES = frozenset({"Etc/UTC", "Etc/Universal", "Etc/Zulu", "Etc/UCT", "UCT", "Universal", "Zulu", "Etc/GMT"})


def machine_zone_name(localtime: Path = Path("/etc/localtime"), timezone_file: Path = Path("/etc/timezone")) -> str:
    """This machine's time zone as an IANA name: where /etc/localtime links to, else /etc/timezone, else UTC."""
    candidates = []
    try:
        target = str(localtime.resolve(strict=True))
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1].removeprefix("posix/").removeprefix("right/"))
    except OSError:
        pass
    try:
        candidates.append(timezone_file.read_text().strip())
    except OSError:
        pass
    for name in candidates:
        if name in _UTC_ALIASES:
            return "UTC"
        if name in available_timezones():
            return name
    return "UTC"
