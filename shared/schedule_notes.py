"""Why an upcoming run is not at the wall-clock time its schedule names: daylight-saving gaps and folds.

shared/schedules.py decides *when* a run happens (a time inside a spring-forward gap runs at the first
instant after it; one that happens twice runs once, at the first). This module only puts those decisions
into words for previews, so a person editing a schedule sees them before the day comes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from shared.schedules import Schedule


def _exists(naive: datetime, zone: ZoneInfo) -> bool:
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def _happens_twice(naive: datetime, zone: ZoneInfo) -> bool:
    return _exists(naive, zone) and (
        naive.replace(tzinfo=zone, fold=0).utcoffset() != naive.replace(tzinfo=zone, fold=1).utcoffset()
    )


def _offset(moment: datetime) -> str:
    text = moment.strftime("%z")  # +0200
    return f"UTC{text[:3]}:{text[3:]}" if text else "UTC"


def _gap(wanted: str, local: datetime) -> dict:
    return {
        "dst": "gap",
        "note": f"{wanted} does not exist on {local:%Y-%m-%d} (the clocks go forward): "
        f"runs at {local:%H:%M} ({_offset(local)}) instead",
    }


def _fold(local: datetime) -> dict:
    return {
        "dst": "fold",
        "note": f"{local:%H:%M} happens twice on {local:%Y-%m-%d} (the clocks go back): "
        f"runs once, at the first ({_offset(local)})",
    }


def _cron_matches(expression: str, naive: datetime) -> bool:
    return next(iter(CronSim(expression, naive - timedelta(minutes=1)))) == naive


def occurrence_note(schedule: Schedule, at_utc: datetime) -> dict:
    """{"dst": "gap" | "fold" | None, "note": words or None} for one run of `schedule`."""
    zone = schedule.zone
    local = at_utc.astimezone(zone)
    if schedule.frequency == "cron":
        naive = local.replace(tzinfo=None)
        if _happens_twice(naive, zone):
            return _fold(local)
        just_before = (at_utc - timedelta(seconds=1)).astimezone(zone)
        moved_forward = (local.utcoffset() or timedelta()) > (just_before.utcoffset() or timedelta())
        if moved_forward and schedule.cron and not _cron_matches(schedule.cron, naive):
            skipped_from = (at_utc + (just_before.utcoffset() or timedelta())).replace(tzinfo=None)
            return _gap(f"{skipped_from:%H:%M}–{local:%H:%M}", local)
        return {"dst": None, "note": None}
    wanted = datetime.combine(local.date(), schedule.time)
    if not _exists(wanted, zone):
        return _gap(f"{schedule.time:%H:%M}", local)
    if _happens_twice(wanted, zone):
        return _fold(local)
    return {"dst": None, "note": None}


def describe_runs(schedule: Schedule, runs: list[datetime]) -> list[dict]:
    """Each run in UTC and in the schedule's zone, with its daylight-saving note."""
    return [
        {"at_utc": run, "at_local": run.astimezone(schedule.zone), **occurrence_note(schedule, run)} for run in runs
    ]
