"""Alert conditions: validation names the field, evaluation streams rows, notification follows the rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.alerts import (
    ConditionFailedError,
    describe,
    evaluate,
    notification_reason,
    parse_condition,
    subject_line,
)
from shared.errors import FieldError
from shared.query.columns import ColumnInfo

COLUMNS = [ColumnInfo("region"), ColumnInfo("revenue", "decimal"), ColumnInfo("day", "date")]
ROWS = [
    ("EMEA", Decimal("1200.50"), date(2024, 6, 1)),
    ("APAC", Decimal("99"), date(2024, 6, 3)),
    ("AMER", None, date(2024, 5, 30)),
]


def check(raw, rows=ROWS):
    return evaluate(parse_condition(raw), COLUMNS, iter(rows))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "rows", "op": "gt", "value": 1}, "condition.kind"),
        ({"kind": "row_count", "op": ">", "value": 1}, "condition.op"),
        ({"kind": "row_count", "op": "gt", "value": "1"}, "condition.value"),
        ({"kind": "row_count", "op": "gt", "value": -1}, "condition.value"),
        ({"kind": "row_count", "op": "gt", "value": True}, "condition.value"),
        ({"kind": "value", "op": "gt", "value": 1}, "condition.column"),
        ({"kind": "value", "column": "x", "aggregate": "avg", "op": "gt", "value": 1}, "condition.aggregate"),
        ({"kind": "value", "column": "x", "aggregate": "sum", "op": "gt", "value": "a"}, "condition.value"),
        ({"kind": "value", "column": "x", "op": "gt", "value": [1]}, "condition.value"),
        ({"kind": "value", "column": "x", "op": "gt", "value": True}, "condition.op"),
        ({"kind": "value", "column": "x", "op": "gt", "value": float("nan")}, "condition.value"),
    ],
)
def test_invalid_conditions_name_the_field(raw, field):
    with pytest.raises(FieldError) as caught:
        parse_condition(raw)
    assert list(caught.value.errors) == [field]


def test_row_count_counts_every_row_of_a_stream():
    outcome = check({"kind": "row_count", "op": "gte", "value": 3}, rows=((i,) * 3 for i in range(5000)))
    assert (outcome.met, outcome.observed, outcome.row_count) == (True, 5000, 5000)
    assert not check({"kind": "row_count", "op": "eq", "value": 0}).met


@pytest.mark.parametrize(
    ("aggregate", "op", "value", "met", "observed"),
    [
        ("first", "eq", "EMEA", True, "EMEA"),
        ("sum", "gt", 1299, True, 1299.5),
        ("sum", "lt", 1299, False, 1299.5),
        ("min", "lt", 100, True, 99),
        ("max", "gte", 1200.5, True, 1200.5),
        ("any", "lt", 100, True, 1),
        ("all", "gt", 50, False, 2),  # the empty cell does not pass
    ],
)
def test_value_aggregates(aggregate, op, value, met, observed):
    column = "region" if aggregate == "first" else "revenue"
    outcome = check({"kind": "value", "column": column, "aggregate": aggregate, "op": op, "value": value})
    assert (outcome.met, outcome.observed) == (met, observed)


def test_dates_compare_with_iso_strings_and_columns_match_case_insensitively():
    stale = check({"kind": "value", "column": "DAY", "aggregate": "max", "op": "lt", "value": "2024-06-02"})
    assert (stale.met, stale.observed) == (False, "2024-06-03")
    aware = [ColumnInfo("at", "datetime")]
    rows = [(datetime(2024, 6, 3, 8, 0, tzinfo=UTC),)]
    outcome = evaluate(
        parse_condition({"kind": "value", "column": "at", "aggregate": "max", "op": "lt", "value": "2024-06-03T09:00"}),
        aware,
        rows,
    )
    assert outcome.met


def test_empty_results_are_false_except_a_zero_sum():
    for aggregate in ("first", "min", "max", "any", "all"):
        outcome = check({"kind": "value", "column": "revenue", "aggregate": aggregate, "op": "ne", "value": 5}, [])
        assert outcome.met is False, aggregate
    total = check({"kind": "value", "column": "revenue", "aggregate": "sum", "op": "eq", "value": 0}, [])
    assert (total.met, total.observed) == (True, 0)


def test_unknown_column_and_text_in_a_number_column_fail_clearly():
    with pytest.raises(ConditionFailedError, match="no column 'cost'.*region, revenue, day"):
        check({"kind": "value", "column": "cost", "op": "gt", "value": 1})
    with pytest.raises(ConditionFailedError, match="'EMEA'.*a number"):
        check({"kind": "value", "column": "region", "aggregate": "sum", "op": "gt", "value": 1})


def test_on_change_notifies_when_the_condition_turns_true_only():
    def reason(previous, state, previous_state=None, **options):
        rules = {"notify": "on_change", "notify_on_recovery": False, "notify_on_error": False, **options}
        return notification_reason(
            previous_condition=previous, previous_state=previous_state or state, state=state, **rules
        )

    assert reason(None, "true") == "triggered"
    assert reason(False, "true") == "triggered"
    assert reason(True, "true") is None
    assert reason(True, "false") is None
    assert reason(True, "false", notify_on_recovery=True) == "recovered"
    assert reason(False, "false", notify_on_recovery=True) is None
    assert reason(True, "true", notify="always") == "triggered"
    assert reason(True, "error", previous_state="true") is None
    assert reason(True, "error", previous_state="true", notify_on_error=True) == "error"
    assert reason(True, "error", previous_state="error", notify_on_error=True) is None
    # An error in between does not make the same true state news again.
    assert reason(True, "true", previous_state="error") is None


def test_subject_names_the_alert_condition_and_observed_value():
    condition = parse_condition({"kind": "value", "column": "qty", "aggregate": "min", "op": "lt", "value": 5})
    assert describe(condition) == "min(qty) < 5"
    assert subject_line("Stock low", condition, "triggered", 3) == "[Alert] Stock low: min(qty) < 5 (observed 3)"
    assert subject_line("Stock low", condition, "recovered", 9).startswith("[Alert resolved] Stock low")
    assert describe(parse_condition({"kind": "row_count", "op": "gt", "value": 10})) == "row count > 10"
