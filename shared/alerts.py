"""Alert rules that need no I/O: conditions, their evaluation over streamed rows, and when to notify.

A condition is either `{"kind": "row_count", "op", "value": N}` or
`{"kind": "value", "column", "aggregate", "op", "value"}`. Rows are fed one at a
time to an `Evaluator`, which keeps only a running aggregate, so any result size
is evaluated in constant memory.

Empty results: `first`, `min` and `max` have nothing to compare and `all` would be
vacuously true; all four evaluate to false ("no rows"), which is what someone
watching "max(created_at) < yesterday" or "all rows ok" expects. `sum` of no rows is 0.
"""

from __future__ import annotations

import logging
import math
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.errors import FieldError, PermanentError
from shared.messaging import EVALUATE_ALERT, Publisher, publish_after_commit
from shared.models.alerts import AlertEvent

log = logging.getLogger(__name__)

KINDS = ("row_count", "value")
OPS: dict[str, tuple[str, Callable[[object, object], bool]]] = {
    "gt": (">", operator.gt),
    "gte": (">=", operator.ge),
    "lt": ("<", operator.lt),
    "lte": ("<=", operator.le),
    "eq": ("=", operator.eq),
    "ne": ("!=", operator.ne),
}
AGGREGATES = ("first", "min", "max", "sum", "any", "all")
MAX_STRING_VALUE = 1000


class ConditionFailedError(PermanentError):
    """The condition cannot be evaluated on this result (unknown column, a text where a number is needed)."""

    code = "condition_failed"


@dataclass(frozen=True)
class Condition:
    kind: str
    op: str
    value: object
    column: str | None = None
    aggregate: str | None = None

    def as_dict(self) -> dict:
        data = {"kind": self.kind, "op": self.op, "value": self.value}
        if self.kind == "value":
            data.update(column=self.column, aggregate=self.aggregate)
        return data


@dataclass(frozen=True)
class Outcome:
    met: bool | None  # None: nothing to compare (empty result)
    observed: object
    row_count: int
    message: str


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def parse_condition(raw: object, field: str = "condition") -> Condition:
    """Validate a condition; FieldError names the offending key (`condition.op`)."""
    if not isinstance(raw, dict):
        raise FieldError(field, "must be an object with kind, op and value")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise FieldError(f"{field}.kind", f"must be one of {', '.join(KINDS)}")
    op = raw.get("op")
    if op not in OPS:
        raise FieldError(f"{field}.op", f"must be one of {', '.join(OPS)}")
    value = raw.get("value")
    if kind == "row_count":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FieldError(f"{field}.value", "must be a whole number of rows (0 or more)")
        extra = sorted(set(raw) - {"kind", "op", "value"})
        if extra:
            raise FieldError(f"{field}.{extra[0]}", "is not used by a row_count condition")
        return Condition(kind, op, value)
    column = raw.get("column")
    if not isinstance(column, str) or not column.strip():
        raise FieldError(f"{field}.column", "name the result column to watch")
    aggregate = raw.get("aggregate", "first")
    if aggregate not in AGGREGATES:
        raise FieldError(f"{field}.aggregate", f"must be one of {', '.join(AGGREGATES)}")
    if isinstance(value, bool):
        if op not in ("eq", "ne"):
            raise FieldError(f"{field}.op", "a true/false value can only be compared with eq or ne")
    elif isinstance(value, float) and not math.isfinite(value):
        raise FieldError(f"{field}.value", "must be a finite number")
    elif not (_is_number(value) or isinstance(value, str)):
        raise FieldError(f"{field}.value", "must be a number or a string")
    if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
        raise FieldError(f"{field}.value", f"must be at most {MAX_STRING_VALUE} characters")
    if aggregate == "sum" and not _is_number(value):
        raise FieldError(f"{field}.value", "a sum is compared with a number")
    return Condition(kind, op, value, column.strip(), aggregate)


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(condition: Condition) -> str:
    """The condition as people read it: `row count > 10`, `sum(revenue) < 1000`, `any status = 'failed'`."""
    symbol = OPS[condition.op][0]
    if condition.kind == "row_count":
        return f"row count {symbol} {condition.value}"
    if condition.aggregate in ("any", "all"):
        return f"{condition.aggregate} {condition.column} {symbol} {_show(condition.value)}"
    return f"{condition.aggregate}({condition.column}) {symbol} {_show(condition.value)}"


def json_value(value: object) -> object:
    """An observed value as JSON keeps it: exact integers stay integers, dates become ISO strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class _Comparer:
    """Turns cells and the condition's value into one comparable domain (number, date, bool or text)."""

    def __init__(self, condition: Condition):
        self.condition = condition
        self.target = condition.value
        self._dated: dict[type, object] = {}

    def _fail(self, cell: object, wanted: str) -> ConditionFailedError:
        return ConditionFailedError(
            f"Column {self.condition.column!r} holds {cell!r}, which cannot be compared with {wanted}."
        )

    def number(self, cell: object) -> Decimal:
        if _is_number(cell):
            return Decimal(str(cell)) if isinstance(cell, float) else Decimal(cell)
        if isinstance(cell, str):
            try:
                return Decimal(cell.strip())
            except InvalidOperation:
                pass
        raise self._fail(cell, "a number")

    def pair(self, cell: object) -> tuple[object, object]:
        """(cell, target) in one domain."""
        target = self.target
        if isinstance(target, bool):
            if isinstance(cell, bool) or cell in (0, 1):
                return bool(cell), target
            if isinstance(cell, str) and cell.strip().lower() in ("true", "false"):
                return cell.strip().lower() == "true", target
            raise self._fail(cell, "true/false")
        if _is_number(target):
            return self.number(cell), Decimal(str(target))
        if isinstance(cell, datetime | date):
            return cell, self._as_moment(cell, str(target))
        return str(cell), target

    def _as_moment(self, cell: date, text: str) -> date:
        try:
            if isinstance(cell, datetime):
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if (moment.tzinfo is None) != (cell.tzinfo is None):
                    # A naive value means the alert's own zone, which is the zone the cells arrive in.
                    moment = moment.replace(tzinfo=cell.tzinfo)
                return moment
            parsed = datetime.fromisoformat(text)
            return parsed.date() if isinstance(parsed, datetime) else parsed
        except ValueError:
            raise ConditionFailedError(
                f"Column {self.condition.column!r} holds dates; {text!r} is not an ISO 8601 date."
            ) from None

    def test(self, cell: object) -> bool:
        left, right = self.pair(cell)
        try:
            return OPS[self.condition.op][1](left, right)
        except TypeError:
            raise self._fail(cell, _show(self.target)) from None


class Evaluator:
    """Feed rows with `add`; `outcome()` once the stream ends. Holds one running value, never the rows."""

    def __init__(self, condition: Condition, columns: Sequence):
        self.condition = condition
        self.rows = 0
        self._index = None if condition.kind == "row_count" else _column_index(condition.column, columns)
        self._compare = _Comparer(condition)
        self._best: object = None  # first / min / max: the original cell
        self._best_key: object = None
        self._sum = Decimal(0)
        self._matches = 0
        self._have_first = False

    def add(self, row: Sequence) -> None:
        self.rows += 1
        if self._index is None:
            return
        cell = row[self._index]
        aggregate = self.condition.aggregate
        if aggregate == "first":
            if not self._have_first:
                self._have_first, self._best = True, cell
            return
        if aggregate in ("any", "all"):
            if cell is not None and self._compare.test(cell):
                self._matches += 1
            return
        if cell is None:
            return
        if aggregate == "sum":
            self._sum += self._compare.number(cell)
            return
        key = self._compare.pair(cell)[0]
        try:
            better = self._best_key is None or (key < self._best_key if aggregate == "min" else key > self._best_key)
        except TypeError:
            raise self._compare._fail(cell, "the column's other values") from None
        if better:
            self._best, self._best_key = cell, key

    def outcome(self) -> Outcome:
        condition = self.condition
        text = describe(condition)
        if condition.kind == "row_count":
            met = OPS[condition.op][1](self.rows, condition.value)
            return Outcome(met, self.rows, self.rows, f"{text}: observed {self.rows} rows")
        aggregate = condition.aggregate
        if aggregate in ("any", "all"):
            if self.rows == 0:
                return Outcome(False, 0, 0, f"{text}: the query returned no rows")
            met = self._matches > 0 if aggregate == "any" else self._matches == self.rows
            return Outcome(met, self._matches, self.rows, f"{text}: {self._matches} of {self.rows} rows match")
        if aggregate == "sum":
            total = json_value(self._sum)
            met = self._compare.test(self._sum)
            return Outcome(met, total, self.rows, f"{text}: observed {total} over {self.rows} rows")
        if self.rows == 0:
            return Outcome(False, None, 0, f"{text}: the query returned no rows")
        observed = json_value(self._best)
        if self._best is None:
            return Outcome(False, None, self.rows, f"{text}: the value is empty")
        met = self._compare.test(self._best)
        return Outcome(met, observed, self.rows, f"{text}: observed {_show(observed)}")


def _column_index(name: str | None, columns: Sequence) -> int:
    names = [getattr(c, "name", c) for c in columns]
    if name in names:
        return names.index(name)
    folded = [str(n).lower() for n in names]
    if name and name.lower() in folded:
        return folded.index(name.lower())
    raise ConditionFailedError(
        f"The query result has no column {name!r} (its columns: {', '.join(map(str, names)) or 'none'})."
    )


def evaluate(condition: Condition, columns: Sequence, rows) -> Outcome:
    """Evaluate over any iterable of rows (a stream, a list in tests)."""
    evaluator = Evaluator(condition, columns)
    for row in rows:
        evaluator.add(row)
    return evaluator.outcome()


def notification_reason(
    *,
    notify: str,
    notify_on_recovery: bool,
    notify_on_error: bool,
    previous_condition: bool | None,
    previous_state: str | None,
    state: str,
) -> str | None:
    """Whether an evaluation emails anyone: 'triggered', 'recovered', 'error' or None.

    `on_change` tells once when the condition turns true (the first answer counts as a
    change from unknown); `always` tells on every true evaluation. Recovery (true -> false)
    and errors are told only when asked for; an error is told once until an answer comes back,
    and does not reset the condition, so true -> error -> true sends nothing the second time.
    """
    if state == "error":
        if notify_on_error and (notify == "always" or previous_state != "error"):
            return "error"
        return None
    if state == "true":
        return "triggered" if notify == "always" or previous_condition is not True else None
    if notify_on_recovery and previous_condition is True:
        return "recovered"
    return None


def subject_line(name: str, condition: Condition, reason: str, observed: object, error: str | None = None) -> str:
    """`[Alert] Stock low: min(qty) < 5 (observed 3)`; recoveries and failures say so up front."""
    if reason == "error":
        return f"[Alert failed] {name}: {(error or 'the query failed')[:150]}"
    prefix = "[Alert resolved]" if reason == "recovered" else "[Alert]"
    return f"{prefix} {name}: {describe(condition)} (observed {_show(observed)})"


# --- starting an evaluation (the only part that touches the database) -----------------------


def start_manual(
    factory: sessionmaker[Session], publisher: Publisher, alert_id: uuid.UUID, *, requester_id, now: datetime
) -> AlertEvent:
    """Queue an evaluation now; next_run_at does not move."""
    with transaction(factory) as session:
        event = AlertEvent(
            alert_id=alert_id,
            trigger="manual",
            requested_by=requester_id,
            scheduled_for=now,
            queued_at=now,
            last_enqueued_at=now,
            state="pending",
        )
        session.add(event)
        session.flush()
        session.expunge(event)
    publish_after_commit(publisher, EVALUATE_ALERT, event.id)
    return event


# --- history -----------------------------------------------------------------------------------------

# Newest first, the id breaking ties: the (alert_id, queued_at DESC, id DESC) index's order and the
# key of the events list's cursor.
EVENTS_ORDER = (AlertEvent.queued_at.desc(), AlertEvent.id.desc())


def events_query(alert_id, *, state: str | None = None, trigger: str | None = None) -> sa.Select:
    """An alert's evaluations, newest first, optionally of one state and one trigger."""
    query = sa.select(AlertEvent).where(AlertEvent.alert_id == alert_id)
    if state:
        query = query.where(AlertEvent.state == state)
    if trigger:
        query = query.where(AlertEvent.trigger == trigger)
    return query.order_by(*EVENTS_ORDER)
