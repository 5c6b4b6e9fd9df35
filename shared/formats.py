"""How values look in a report: one number and date format for every writer, in the reader's locale (Babel/CLDR).

A column's format comes from the semantic catalog (`ColumnInfo.format`):

    integer · decimal[:places] · percent[:places] · currency[:ISO code[:places]] · compact[:ISO code]

`percent` values are fractions (0.123 is 12.3 %). `currency` without a code uses the locale's own
currency (de-DE: EUR). Rounding is half-up everywhere, as Excel shows it, so a PDF cell and the same
XLSX cell agree. Text follows CLDR, including its no-break spaces ("217.399,17\u00a0€",
"12,3\u00a0%"): they keep a number and its sign on one line in a narrow PDF cell.

Dates are CLDR's "medium" form ("Nov 28, 2026", "28.11.2026", "28 nov. 2026"): the month is
spelled or the order is the locale's only one, so no reader mistakes 11/12 for 12/11.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.core import get_global

from shared.i18n import gettext
from shared.query.columns import ColumnInfo

KINDS = ("integer", "decimal", "percent", "currency", "compact")
NUMERIC_TYPES = ("integer", "decimal")
MAX_PLACES = 10
# Spreadsheets keep ISO dates: Excel shows a custom code the same for every reader, and ISO is the
# one order nobody misreads. Cells hold real dates, so readers can restyle them.
EXCEL_DATE = "yyyy-mm-dd"
EXCEL_DATETIME = "yyyy-mm-dd hh:mm:ss"
_USAGE = "use integer, decimal[:places], percent[:places], currency[:ISO code[:places]] or compact[:ISO code]"
_CODE = re.compile(r"^[A-Za-z]{3}$")
_NUMBERS = (int, float, Decimal)


@dataclass(frozen=True)
class NumberFormat:
    kind: str  # one of KINDS
    places: int | None = None  # None: the kind's default (decimal 2, percent 1, currency its own digits)
    currency: str | None = None  # ISO 4217; None: the locale's currency


# --- parsing ------------------------------------------------------------------------------


def _places(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= MAX_PLACES:
        raise ValueError(f"bad places {text!r} in format {spec!r}: a whole number from 0 to {MAX_PLACES}")
    return int(text)


def _currency(text: str, spec: str) -> str:
    code = text.upper()
    if not _CODE.match(text) or not babel_numbers.is_currency(code):
        raise ValueError(f"unknown currency {text!r} in format {spec!r}: use an ISO 4217 code such as EUR or USD")
    return code


@lru_cache(maxsize=256)
def parse_format(text: str | None) -> NumberFormat | None:
    """The catalog's format string as a NumberFormat (None stays None); ValueError naming the bad part."""
    if text is None or not text.strip():
        return None
    kind, *args = [part.strip() for part in text.strip().split(":")]
    kind = kind.lower()
    if kind not in KINDS:
        raise ValueError(f"unknown format {kind!r}; {_USAGE}")
    if kind == "integer" and args:
        raise ValueError(f"format {text!r}: integer takes no options; {_USAGE}")
    if kind in ("decimal", "percent"):
        if len(args) > 1:
            raise ValueError(f"format {text!r}: {kind} takes at most a number of places; {_USAGE}")
        return NumberFormat(kind, _places(args[0], text) if args else None)
    if kind == "currency":
        if len(args) > 2:
            raise ValueError(f"format {text!r}: currency takes an ISO code and places; {_USAGE}")
        code = _currency(args[0], text) if args else None
        return NumberFormat(kind, _places(args[1], text) if len(args) == 2 else None, code)
    if kind == "compact":
        if len(args) > 1:
            raise ValueError(f"format {text!r}: compact takes at most an ISO code; {_USAGE}")
        return NumberFormat(kind, None, _currency(args[0], text) if args else None)
    return NumberFormat(kind)


def _safe_format(text: str | None) -> NumberFormat | None:
    try:
        return parse_format(text)
    except ValueError:
        return None


# --- locales ------------------------------------------------------------------------------


@lru_cache(maxsize=128)
def _locale(text: str) -> Locale:
    try:
        return Locale.parse(text.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError, AttributeError):
        raise ValueError(f"unknown locale {text!r}: use a language tag such as en-US, de-DE or fr-FR") from None


LOCALE_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}")


def check_locale(text: str) -> str:
    """'de_de' -> 'de-DE' (BCP 47 spelling); ValueError for a malformed tag or a locale CLDR does not know."""
    if not isinstance(text, str) or not LOCALE_TAG.fullmatch(text):
        raise ValueError(f"{text!r} is not a locale: use a language tag such as en-US, de-DE or fr-FR")
    return str(_locale(text)).replace("_", "-")


@lru_cache(maxsize=128)
def locale_currency(locale: str) -> str:
    """The currency of the locale's country (de-DE -> EUR); a bare language uses its likely country."""
    loc = _locale(locale)
    territory = loc.territory or Locale.parse(get_global("likely_subtags").get(loc.language, "en_US")).territory
    currencies = babel_numbers.get_territory_currencies(territory or "US")
    return currencies[0] if currencies else "USD"


# --- numbers ------------------------------------------------------------------------------


def _rounding() -> AbstractContextManager:
    # Babel quantizes with the context's rounding; half-up matches Excel and what readers expect.
    return decimal.localcontext(rounding=decimal.ROUND_HALF_UP)


def _fixed(pattern, places: int):
    """A copy of a CLDR pattern showing exactly `places` decimals."""
    fixed = copy.copy(pattern)
    fixed.frac_prec = (places, places)
    return fixed


def _decimal_pattern(places: int, max_places: int | None = None):
    pattern = babel_numbers.parse_pattern("#,##0.###")
    pattern.frac_prec = (places, places if max_places is None else max_places)
    return pattern


def _unabbreviated(number, loc: Locale, currency: str | None) -> bool:
    """Whether CLDR has no short unit for this magnitude (German thousands: "200.000", not "200 Tsd.")."""
    whole = int(abs(number))
    if whole < 1000:
        return False
    table = loc.compact_currency_formats if currency else loc.compact_decimal_formats
    others = table["short"]["other"]
    magnitude = min(10 ** (len(str(whole)) - 1), max(int(key) for key in others))
    pattern = others.get(str(magnitude))
    return pattern is None or not pattern.pattern.strip("0#")


def _plain(value, loc: Locale, column_type: str | None) -> str:
    """A number without a catalog format: integers grouped from 10,000 (years stay "2026"), decimals as stored."""
    if isinstance(value, float) and column_type == "integer" and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return babel_numbers.format_decimal(value, "#,##0" if abs(value) >= 10_000 else "0", locale=loc)
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        return babel_numbers.format_decimal(value, locale=loc)
    if isinstance(value, Decimal):  # Decimal('1069.40') keeps its two places
        return _decimal_pattern(max(0, -number.as_tuple().exponent)).apply(number, loc)
    # Floats: six significant digits, never fewer whole digits, trailing zeros dropped.
    places = 0 if number == 0 else min(MAX_PLACES, max(0, 5 - number.adjusted()))
    return _decimal_pattern(0, places).apply(number, loc)


def _unsigned_zero(value, places: int, scale: int = 1):
    """-0.001 at two places is "0.00", not "-0.00"."""
    number = Decimal(str(value))
    if number < 0 and (number * scale).quantize(Decimal(1).scaleb(-places), decimal.ROUND_HALF_UP) == 0:
        return number.copy_abs()
    return value


def _shown_places(spec: NumberFormat, code: str | None) -> int:
    if spec.kind == "integer":
        return 0
    if spec.places is not None:
        return spec.places
    if spec.kind == "currency":
        return babel_numbers.get_currency_precision(code)
    return 1 if spec.kind == "percent" else 2


def _compact(value, loc: Locale, code: str | None) -> str:
    if _unabbreviated(value, loc, code):  # the plain number, grouped, as CLDR would write it
        if code:
            return _fixed(loc.currency_formats["standard"], 0).apply(value, loc, currency=code, currency_digits=False)
        return babel_numbers.format_decimal(value, "#,##0", locale=loc)
    if code:
        return babel_numbers.format_compact_currency(value, code, locale=loc, fraction_digits=1)
    return babel_numbers.format_compact_decimal(value, locale=loc, fraction_digits=1)


def format_number(value, fmt: str | None, locale: str, *, column_type: str | None = None) -> str:
    """A number as locale text: de-DE 217399.17 'currency' -> '217.399,17\u00a0€'."""
    loc, spec = _locale(locale), parse_format(fmt)
    with _rounding():
        if spec is None:
            return _plain(value, loc, column_type)
        if isinstance(value, float | Decimal) and not Decimal(str(value)).is_finite():
            return babel_numbers.format_decimal(value, locale=loc)
        if spec.kind == "compact":
            return _compact(value, loc, spec.currency)
        code = (spec.currency or locale_currency(locale)) if spec.kind == "currency" else None
        places = _shown_places(spec, code)
        value = _unsigned_zero(value, places, 100 if spec.kind == "percent" else 1)
        if spec.kind == "percent":
            return _fixed(loc.percent_formats[None], places).apply(value, loc)
        if spec.kind == "currency":
            pattern = _fixed(loc.currency_formats["standard"], places)
            return pattern.apply(value, loc, currency=code, currency_digits=False)
        return _decimal_pattern(places).apply(value, loc)  # integer, decimal


# --- dates --------------------------------------------------------------------------------


def format_date(value: date, locale: str) -> str:
    """CLDR medium date: en-US 'Nov 28, 2026', en-GB '28 Nov 2026', de-DE '28.11.2026', fr-FR '28 nov. 2026'."""
    return babel_dates.format_date(value, "medium", locale=_locale(locale))


def zone_abbreviation(value: datetime) -> str:
    """The tz database's abbreviation (CET, EDT, JST); numeric ones read 'UTC-03' so they still look like zones."""
    name = value.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" and name else name


def format_datetime(value: datetime, locale: str, zone: str) -> str:
    """Medium date and time; aware values in `zone` with its abbreviation ('28.11.2026, 15:04:05 CET')."""
    loc = _locale(locale)
    if value.tzinfo is None:  # naive values are wall-clock times already: shown as stored
        return babel_dates.format_datetime(value, "medium", locale=loc)
    local = value.astimezone(ZoneInfo(zone))
    text = babel_dates.format_datetime(local, "medium", tzinfo=local.tzinfo, locale=loc)
    return f"{text} {zone_abbreviation(local)}"


def format_time(value: time, locale: str) -> str:
    return babel_dates.format_time(value.replace(tzinfo=None), "medium", locale=_locale(locale))


# --- cells --------------------------------------------------------------------------------


def format_value(value, column: ColumnInfo, locale: str, zone: str) -> str:
    """Any cell as people read it (PDF cells, messages, width estimates); NULL is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return gettext(locale, "Yes") if value else gettext(locale, "No")
    if isinstance(value, _NUMBERS):
        return format_number(value, column.format, locale, column_type=column.type)
    if isinstance(value, datetime):
        return format_datetime(value, locale, zone)
    if isinstance(value, date):
        return format_date(value, locale)
    if isinstance(value, time):
        return format_time(value, locale)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return str(value)


def is_number(value: object) -> bool:
    return isinstance(value, _NUMBERS) and not isinstance(value, bool)


def is_right_aligned(column: ColumnInfo, sample=None) -> bool:
    """Numbers line up on the right: numeric columns, number formats, or a numeric sample value."""
    return column.type in NUMERIC_TYPES or _safe_format(column.format) is not None or is_number(sample)


# --- spreadsheets -------------------------------------------------------------------------


def _excel_quote(text: str) -> str:
    return '"' + text.replace("\u00a0", " ").replace("\u202f", " ").replace('"', "") + '"' if text else ""


def _excel_currency(number_code: str, code: str, locale: str) -> str:
    """Excel codes are locale-free ('#,##0.00'); the symbol and its side follow the locale's CLDR pattern."""
    loc = _locale(locale)
    pattern = loc.currency_formats["standard"]
    symbol = babel_numbers.get_currency_symbol(code, locale=loc)
    prefix, suffix = (part.replace("¤", symbol) for part in (pattern.prefix[0], pattern.suffix[0]))
    return f"{_excel_quote(prefix)}{number_code}{_excel_quote(suffix)}"


def _places_code(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


def excel_format(fmt: str | None, locale: str, *, column_type: str | None = None) -> str | None:
    """The Excel number format code for a column; None leaves Excel's General (text, dates, plain integers).

    `compact` cannot be shortened by a code without losing negatives and the locale's units (Excel
    allows two conditions and no plural rules), so a compact column shows whole numbers ('#,##0',
    with its currency symbol): the cell still holds the exact value.
    """
    spec = parse_format(fmt)
    if spec is None:
        return _places_code(2) if column_type == "decimal" else None
    if spec.kind == "integer":
        return _places_code(0)
    if spec.kind == "decimal":
        return _places_code(2 if spec.places is None else spec.places)
    if spec.kind == "percent":
        places = 1 if spec.places is None else spec.places
        return "0" + ("." + "0" * places if places else "") + "%"
    code = spec.currency or locale_currency(locale)
    if spec.kind == "compact":
        return _excel_currency(_places_code(0), code, locale) if spec.currency else _places_code(0)
    places = babel_numbers.get_currency_precision(code) if spec.places is None else spec.places
    return _excel_currency(_places_code(places), code, locale)


def settle_columns(columns: list[ColumnInfo], first_row: tuple | None) -> list[ColumnInfo]:
    """Columns with no declared type or format (raw SQL on SQLite) take a number format from the first row.

    A column of floats (sums of amounts) reads with two decimals throughout (`1,069.40`, `3,804.00`),
    not as each value happens to print (`1,069.4`, `3804`). Declared columns are left as they are.
    """
    if not first_row:
        return columns
    settled = []
    for index, column in enumerate(columns):
        value = first_row[index] if index < len(first_row) else None
        untyped = column.format is None and column.type not in (*NUMERIC_TYPES, "date", "datetime", "boolean")
        if untyped and isinstance(value, float):
            column = dataclasses.replace(column, type="decimal", format="decimal")
        elif untyped and isinstance(value, int) and not isinstance(value, bool):
            column = dataclasses.replace(column, type="integer")
        settled.append(column)
    return settled
