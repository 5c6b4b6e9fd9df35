"""A saved query's filters in the reader's words: `order_date eq last_90_days` -> "Order date: last 90 days".

Field labels come from the catalog (as the data team wrote them, untranslated); operators, relative
periods and values follow the report's locale. Every phrase is one translated fragment with its
placeholder ("%(value)s or more"), never words glued together, so translators can order it freely.
Comparisons take their words from the value: numbers read "more than", dates and periods "later
than", anything else keeps the symbol ("> M").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from shared import formats
from shared.i18n import gettext, ngettext
from shared.query import relative_dates

MAX_LISTED = 10  # `in` takes up to 1000 values; a filter line names the first few
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_LAST_N_DAYS = re.compile(r"^last_(\d{1,4})_days$")


def _(message: str) -> str:
    """Marks a msgid for the catalogs; the translation happens where the text is used."""
    return message


PERIODS = {
    "today": _("today"),
    "yesterday": _("yesterday"),
    "this_week": _("this week"),
    "previous_week": _("previous week"),
    "this_month": _("this month"),
    "previous_month": _("previous month"),
    "this_quarter": _("this quarter"),
    "previous_quarter": _("previous quarter"),
    "this_year": _("this year"),
    "previous_year": _("previous year"),
    "week_to_date": _("week to date"),
    "month_to_date": _("month to date"),
    "quarter_to_date": _("quarter to date"),
    "year_to_date": _("year to date"),
}
# op -> (for numbers, for dates and periods, for anything else)
COMPARISONS = {
    "gt": (_("more than %(value)s"), _("later than %(value)s"), "> %(value)s"),
    "gte": (_("%(value)s or more"), _("%(value)s or later"), "≥ %(value)s"),
    "lt": (_("less than %(value)s"), _("earlier than %(value)s"), "< %(value)s"),
    "lte": (_("%(value)s or less"), _("%(value)s or earlier"), "≤ %(value)s"),
}
PHRASES = {
    "ne": _("not %(value)s"),
    "not_in": _("not %(value)s"),
    "between": _("%(low)s to %(high)s"),
    "contains": _("contains “%(value)s”"),
    "starts_with": _("starts with “%(value)s”"),
    "is_null": _("empty"),
    "is_not_null": _("not empty"),
}


def humanise(name: str) -> str:
    """`order_date` -> "Order date", for a field the catalog gave no label."""
    words = " ".join(name.replace("_", " ").split())
    return words[:1].upper() + words[1:]


def _number(value: int | float | Decimal, locale: str) -> str:
    """Grouped, with the places the value was written with (1000 -> "1,000", 2.5 -> "2.5")."""
    exponent = Decimal(str(value)).normalize().as_tuple().exponent
    places = min(formats.MAX_PLACES, max(0, -exponent)) if isinstance(exponent, int) else 0
    return formats.format_number(value, f"decimal:{places}" if places else "integer", locale)


def _moment(value: datetime, locale: str) -> str:
    """A filter's date-time as written: without an offset it is the report's wall-clock time."""
    text = formats.format_datetime(value.replace(tzinfo=None), locale, "UTC")
    return f"{text} {formats.zone_abbreviation(value)}" if value.tzinfo else text


def _period(token: str, locale: str) -> str:
    match = _LAST_N_DAYS.match(token)
    if match:
        days = int(match.group(1))
        count = formats.format_number(days, "integer", locale)
        return ngettext(locale, "last %(count)s day", "last %(count)s days", days, count=count)
    return gettext(locale, PERIODS[token])


def _value(value: object, locale: str) -> str:
    """One filter value as text: numbers and dates in the locale's style, periods in words."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return gettext(locale, "Yes") if value else gettext(locale, "No")
    if isinstance(value, int | float | Decimal):
        return _number(value, locale)
    if isinstance(value, datetime):
        return _moment(value, locale)
    if isinstance(value, date):
        return formats.format_date(value, locale)
    if not isinstance(value, str):
        return str(value)
    if relative_dates.is_relative(value):
        return _period(value, locale)
    try:
        if _ISO_DATE.match(value):
            return formats.format_date(date.fromisoformat(value), locale)
        if _ISO_DATETIME.match(value):
            return _moment(datetime.fromisoformat(value), locale)
    except ValueError:
        pass  # looked like a date but is not one: show it as written
    return value


def _values(values: list, locale: str) -> str:
    shown = ", ".join(_value(v, locale) for v in values[:MAX_LISTED])
    extra = len(values) - MAX_LISTED
    if extra <= 0:
        return shown
    count = formats.format_number(extra, "integer", locale)
    return ngettext(
        locale, "%(values)s and %(count)s more", "%(values)s and %(count)s more", extra, values=shown, count=count
    )


def _kind(value: object) -> int:
    """Index into COMPARISONS: 0 numbers, 1 dates and periods, 2 anything else."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return 0
    if isinstance(value, date) or (
        isinstance(value, str)
        and (relative_dates.is_relative(value) or _ISO_DATE.match(value) or _ISO_DATETIME.match(value))
    ):
        return 1
    return 2


def _condition(op: object, value: object, locale: str) -> str:
    if op == "eq":
        return _value(value, locale)
    if op == "in" and isinstance(value, list):
        return _values(value, locale)
    if op in ("ne", "not_in"):
        shown = _values(value, locale) if isinstance(value, list) else _value(value, locale)
        return gettext(locale, PHRASES[op], value=shown)
    if op in COMPARISONS:
        return gettext(locale, COMPARISONS[op][_kind(value)], value=_value(value, locale))
    if op == "between" and isinstance(value, list) and len(value) == 2:
        low, high = (_value(v, locale) for v in value)
        return gettext(locale, PHRASES[op], low=low, high=high)
    if op in ("contains", "starts_with"):
        return gettext(locale, PHRASES[op], value=str(value))  # the text as typed, never reformatted
    if op in ("is_null", "is_not_null"):
        return gettext(locale, PHRASES[op])
    return f"{op} {value}"  # the compiler rejects other shapes; show rather than hide one that slipped by


def describe_filter(spec: dict, *, entity_fields: dict[str, str] | None, locale: str) -> str:
    field = str(spec.get("field"))
    label = (entity_fields or {}).get(field) or humanise(field)
    condition = _condition(spec.get("op"), spec.get("value"), locale)
    return gettext(locale, "%(field)s: %(value)s", field=label, value=condition)


def describe_filters(filters: list[dict], *, entity_fields: dict[str, str] | None, locale: str) -> tuple[str, ...]:
    """Each filter as one line: "Region: not APAC", "Revenue: more than 1,000", "Order date: last 90 days"."""
    return tuple(
        describe_filter(spec, entity_fields=entity_fields, locale=locale)
        for spec in filters or ()
        if isinstance(spec, dict)
    )
