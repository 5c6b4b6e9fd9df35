"""Report charts as Vega-Lite specs, rendered to SVG (PDF) and PNG (email, Slack) by vl-convert.

One request becomes zero or more self-contained specs: data travels inline (`data.values`,
with fields renamed to `x`, `series`, `value` so names like `a.b` need no escaping), and the
d3 number/time locales a spec needs travel in `usermeta.biapp`, so `to_svg(spec)` alone renders
it the same way on every worker. Rendering fetches nothing: no URL, font or image is allowed.

Choices a reader of a chart relies on:
- a time axis runs forward and is spaced by real time, whatever order the query returned;
- measures of different units or magnitudes (more than MAGNITUDE_RATIO apart) never share
  an axis: each group is its own spec, with its own title and y axis;
- beyond MAX_SERIES series values, the smallest are left out and the subtitle says so
  (summing them into "Other" would be wrong for averages and ratios); pie slices beyond
  MAX_SLICES are summed into "Other", since slices of a whole always add up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import vl_convert

from shared.query.columns import ColumnInfo

MAX_POINTS = 500  # rows per chart; a time axis keeps the newest, a category axis the first
MAX_SERIES = 8
MAX_SLICES = 8  # including "Other"
MAGNITUDE_RATIO = 10.0
WIDTH, HEIGHT = 640, 260
KPI_WIDTH, KPI_HEIGHT = 400, 150
Y_TICKS = 5
VEGA_LITE_VERSION = "5.21"  # the specs are written for v5; vl-convert bundles several versions
KINDS = ("bar", "line", "area", "pie", "donut", "kpi")
OTHER = "Other"

# Okabe–Ito, ordered so the first colours are the most distinct on white; yellow comes late.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442")
OTHER_COLOR = "#BBBBBB"
UP_COLOR, DOWN_COLOR, FLAT_COLOR = "#009E73", "#D55E00", "#555555"  # with ▲/▼, never colour alone
FONT = "DejaVu Sans, sans-serif"

# Short scale words for compact numbers; languages not listed use the English ones.
COMPACT_WORDS = {
    "en": ("K", "M", "B", "T"),
    "de": ("\u00a0Tsd.", "\u00a0Mio.", "\u00a0Mrd.", "\u00a0Bio."),
    "fr": ("\u00a0k", "\u00a0M", "\u00a0Md", "\u00a0Bn"),
    "es": ("\u00a0mil", "\u00a0M", "\u00a0mil\u00a0M", "\u00a0B"),
    "it": ("\u00a0k", "\u00a0Mln", "\u00a0Mrd", "\u00a0Bln"),
    "nl": ("K", "\u00a0mln.", "\u00a0mld.", "\u00a0bln."),
    "pt": ("\u00a0mil", "\u00a0mi", "\u00a0bi", "\u00a0tri"),
}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩", "BRL": "R$"}
ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW", "CLP", "ISK", "VND", "HUF"}
# d3 ships locales as language-REGION; a bare language maps to its most common region.
DEFAULT_REGIONS = {"en": "US", "pt": "BR", "zh": "CN", "ja": "JP", "ko": "KR", "da": "DK", "cs": "CZ", "he": "IL"}
TIME_GRAINS = {  # grain -> (Vega interval, utc timeUnit, axis label format)
    "year": ("year", "utcyear", "%Y"),
    "month": ("month", "utcyearmonth", "%b %Y"),
    "day": ("day", "utcyearmonthdate", "%b %d"),
    "hour": ("hours", "utcyearmonthdatehours", "%b %d %H:%M"),
    "minute": ("minutes", "utcyearmonthdatehoursminutes", "%b %d %H:%M"),
}


@dataclass(frozen=True)
class ChartRequest:
    """One widget's chart: what to draw, from the first rows of its query, as typed values."""

    kind: str  # bar | line | area | pie | donut | kpi (anything else, e.g. table: no chart)
    title: str
    columns: list[ColumnInfo]
    rows: list[tuple]  # in query order; the charts sort a time axis themselves
    x: str | None = None  # None: the first non-numeric column
    series: str | None = None  # each value becomes its own line, bar or area layer
    measures: tuple[str, ...] = ()  # (): every numeric column but x and series
    locale: str = "en-US"  # BCP 47
    timezone: str = "UTC"  # aware datetimes are drawn at their wall time here
    previous: dict | None = None  # KPI only: the previous run's kpi_values()


# --- number formats -------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberFormat:
    """A ColumnInfo.format parsed: `integer`, `decimal[:N]`, `percent[:N]`, `currency[:ISO[:N]]`, `compact[:ISO]`."""

    kind: str | None = None
    places: int | None = None
    currency: str | None = None  # ISO code; "" = the locale's own currency

    @classmethod
    def parse(cls, text: str | None) -> NumberFormat:
        parts = (text or "").strip().split(":")
        kind, args = parts[0].lower(), parts[1:]
        places = next((int(a) for a in args if a.isdigit()), None)
        code = next((a.upper() for a in args if a.isalpha()), "")
        if kind in ("integer", "decimal", "percent"):
            return cls(kind, places)
        if kind in ("currency", "compact"):
            return cls(kind, places, code)
        return cls()

    @property
    def is_money(self) -> bool:
        return self.kind == "currency" or (self.kind == "compact" and bool(self.currency))

    @property
    def unit(self) -> str:
        """Measures share an axis only with measures of the same unit."""
        if self.kind == "percent":
            return "%"
        return f"money:{self.currency}" if self.is_money else "number"

    def d3(self) -> str:
        """The full d3-format string, for tooltips."""
        if self.kind == "integer":
            return ",.0f"
        if self.kind == "decimal":
            return f",.{2 if self.places is None else self.places}f"
        if self.kind == "percent":
            return ".1~%" if self.places is None else f".{self.places}%"
        if self.kind == "currency":
            places = self.places if self.places is not None else 0 if self.currency in ZERO_DECIMAL_CURRENCIES else 2
            return f"$,.{places}f"
        if self.kind == "compact":
            return "$,.0f" if self.is_money else ",.0f"
        return ",.2~f"


@lru_cache(maxsize=64)
def _d3_locale_name(locale: str, time: bool) -> str:
    lookup = vl_convert.get_time_format_locale if time else vl_convert.get_format_locale
    language, _, region = locale.replace("_", "-").partition("-")
    language, region = language.lower(), region.split("-")[-1].upper()
    for name in (f"{language}-{region}", f"{language}-{DEFAULT_REGIONS.get(language, language.upper())}"):
        try:
            lookup(name)
            return name
        except ValueError:
            continue
    return "en-US"


def _format_locale(locale: str, fmt: NumberFormat) -> dict:
    """d3's number locale, its currency switched to the measure's ISO code when it names one."""
    base = dict(vl_convert.get_format_locale(_d3_locale_name(locale, time=False)))
    if fmt.is_money and fmt.currency:
        symbol = CURRENCY_SYMBOLS.get(fmt.currency, fmt.currency)
        base["currency"] = [symbol, ""] if base["currency"][0] else ["", "\u00a0" + symbol]
    return base


def _compact_expr(value: str, fmt: NumberFormat, locale: str, number_locale: dict) -> str:
    """A Vega expression that writes `value` as 200K, €1.2M or 1,2 Mio. € (d3's SI prefixes say k and G)."""
    words = COMPACT_WORDS.get(locale.split("-")[0].lower(), COMPACT_WORDS["en"])
    prefix, suffix = number_locale["currency"] if fmt.is_money else ("", "")
    magnitude = f"abs({value})"
    branches = "".join(
        f"{magnitude} >= {10**power} ? format({magnitude} / {10**power}, ',.3~r') + {_js(word)} : "
        for power, word in zip((12, 9, 6, 3), reversed(words), strict=True)
    )
    minus = number_locale.get("minus", "\u2212")
    return (
        f"({value} < 0 ? {_js(minus)} : '') + {_js(prefix)} + ({branches}format({magnitude}, ',.3~r')) + {_js(suffix)}"
    )


def _full_expr(value: str, fmt: NumberFormat, locale: str, number_locale: dict) -> str:
    if fmt.kind == "compact":
        return _compact_expr(value, fmt, locale, number_locale)
    return f"format({value}, {_js(fmt.d3())})"


def _js(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _py_number(value: float, fmt: NumberFormat, number_locale: dict) -> str:
    """The same number as text in Python, for alt text (d3 draws the chart's own)."""
    spec = fmt.d3()
    places = int(spec.split(".")[1].rstrip("f%~")) if "." in spec else 0
    scaled = abs(value) * (100 if fmt.kind == "percent" else 1)
    text = f"{scaled:,.{places}f}"
    if "~" in spec and "." in text:
        text = text.rstrip("0").rstrip(".")
    text = text.translate(str.maketrans({",": "\0", ".": number_locale["decimal"]})).replace(
        "\0", number_locale["thousands"]
    )
    if fmt.kind == "percent":
        text += number_locale.get("percent", "%")
    if fmt.is_money:
        prefix, suffix = number_locale["currency"]
        text = prefix + text + suffix
    return ("-" if value < 0 else "") + text


# --- preparing rows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measure:
    name: str
    label: str
    fmt: NumberFormat
    integer: bool
    color: str


@dataclass
class _Prepared:
    """The request's rows reduced to what the chart draws, in the order it draws them."""

    x_label: str
    temporal: bool
    grain: str | None
    x_values: list  # per row: ISO string (temporal) or text
    series_label: str | None
    series_values: list[str | None]
    series_kept: list[str]
    measures: list[_Measure]
    values: list[dict[str, float | None]]  # per row: measure name -> value
    notes: list[str] = field(default_factory=list)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_numeric(column: ColumnInfo, values: list) -> bool:
    if column.type in ("integer", "decimal"):
        return True
    present = [v for v in values if v is not None]
    return bool(present) and all(_number(v) is not None for v in present)


def _as_moment(value: object) -> datetime | None:
    """A date or datetime, also when a raw SQL driver handed it over as an ISO string."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and "-" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _grain(moments: list[datetime]) -> str:
    if any(m.second or m.microsecond for m in moments) or any(m.minute for m in moments):
        return "minute"
    if any(m.hour for m in moments):
        return "hour"
    if any(m.day != 1 for m in moments):
        return "day"
    return "month" if any(m.month != 1 for m in moments) else "year"


def _prepare(request: ChartRequest) -> _Prepared | None:
    if request.kind not in KINDS or not request.rows or not request.columns:
        return None
    columns = request.columns
    index = {c.name: i for i, c in enumerate(columns)}
    numeric = {c.name for i, c in enumerate(columns) if _is_numeric(c, [r[i] for r in request.rows])}
    series = request.series if request.series in index else None
    x = request.x if request.x in index else None
    categorical = [c.name for c in columns if c.name not in numeric]
    if x is None:
        # Unnamed: a line or area runs over time when the rows have a date; else the first category.
        dated = [c.name for c in columns if c.type in ("date", "datetime") and c.name in categorical]
        over_time = request.kind in ("line", "area") and dated
        x = dated[0] if over_time else next((name for name in categorical if name != series), None)
    if series is None and request.series is None and request.kind in ("line", "area", "bar"):
        # Unnamed: another category column splits the rows into one line / bar group per value, so the
        # rows of "revenue by day and region" never zig-zag along one line.
        series = next((name for name in categorical if name != x), None)
    names = [m for m in request.measures if m in index and m in numeric] or (
        [] if request.measures else [c.name for c in columns if c.name in numeric and c.name not in (x, series)]
    )
    if not names:
        return None
    measures = [
        _Measure(
            name,
            columns[index[name]].label or name,
            NumberFormat.parse(columns[index[name]].format),
            columns[index[name]].type == "integer" or columns[index[name]].format == "integer",
            PALETTE[n % len(PALETTE)],
        )
        for n, name in enumerate(names)
    ]
    rows = list(request.rows)
    notes: list[str] = []
    x_column = columns[index[x]] if x is not None else None
    moments = [_as_moment(r[index[x]]) for r in rows] if x is not None else []
    raw_x = [r[index[x]] for r in rows] if x is not None else []
    temporal = any(m is not None for m in moments) and all(
        m is not None or v is None for m, v in zip(moments, raw_x, strict=True)
    )
    grain = None
    if temporal:
        zone = ZoneInfo(request.timezone)
        walls = [None if m is None else m.astimezone(zone).replace(tzinfo=None) if m.tzinfo else m for m in moments]
        kept = sorted((w, r) for w, r in zip(walls, range(len(rows)), strict=True) if w is not None)
        if len(kept) > MAX_POINTS:
            notes.append(f"latest {MAX_POINTS} of {len(kept)} rows")
            kept = kept[-MAX_POINTS:]
        order = [r for _, r in kept]
        grain = _grain([w for w, _ in kept])
        dated_only = grain in ("day", "month", "year")
        x_values = [w.strftime("%Y-%m-%d" if dated_only else "%Y-%m-%dT%H:%M:%S") for w, _ in kept]
    else:
        order = list(range(len(rows)))
        if len(order) > MAX_POINTS:
            notes.append(f"first {MAX_POINTS} of {len(order)} rows")
            order = order[:MAX_POINTS]
        x_values = [_text(rows[r][index[x]]) if x is not None else str(n + 1) for n, r in enumerate(order)]
    values = [{m.name: _number(rows[r][index[m.name]]) for m in measures} for r in order]
    series_values: list[str | None] = [_text(rows[r][index[series]]) for r in order] if series else []
    prepared = _Prepared(
        x_label=(x_column.label or x_column.name) if x_column else "#",
        temporal=temporal,
        grain=grain,
        x_values=x_values,
        series_label=(columns[index[series]].label or series) if series else None,
        series_values=series_values,
        series_kept=[],
        measures=measures,
        values=values,
        notes=notes,
    )
    if series:
        _rank_series(prepared)
    if all(v is None for row in values for v in row.values()):
        return None
    return prepared


def _text(value: object) -> str:
    if value is None:
        return "(blank)"
    if isinstance(value, float | Decimal) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _rank_series(prepared: _Prepared) -> None:
    """Keep the MAX_SERIES series with the largest totals of the first measure, largest first."""
    first = prepared.measures[0].name
    totals: dict[str, float] = {}
    for name, row in zip(prepared.series_values, prepared.values, strict=True):
        totals[name] = totals.get(name, 0.0) + abs(row[first] or 0.0)
    ranked = sorted(totals, key=lambda s: -totals[s])
    if len(ranked) > MAX_SERIES:
        prepared.notes.append(f"top {MAX_SERIES} of {len(ranked)} {prepared.series_label} values")
    prepared.series_kept = ranked[:MAX_SERIES]


def _magnitude_groups(prepared: _Prepared) -> list[list[_Measure]]:
    """Measures that may share one y axis: same unit, and within MAGNITUDE_RATIO of the largest."""
    size = {
        m.name: max((abs(row[m.name]) for row in prepared.values if row[m.name] is not None), default=0.0)
        for m in prepared.measures
    }
    groups: list[list[_Measure]] = []
    for measure in sorted(prepared.measures, key=lambda m: -size[m.name]):
        home = next(
            (
                g
                for g in groups
                if g[0].fmt.unit == measure.fmt.unit
                and (size[measure.name] == 0 or size[g[0].name] / size[measure.name] <= MAGNITUDE_RATIO)
            ),
            None,
        )
        if home is None:
            groups.append([measure])
        else:
            home.append(measure)
    position = {m.name: n for n, m in enumerate(prepared.measures)}
    for group in groups:
        group.sort(key=lambda m: position[m.name])
    return sorted(groups, key=lambda g: position[g[0].name])


# --- specs ------------------------------------------------------------------------------------


def build_specs(request: ChartRequest) -> list[dict]:
    """Vega-Lite v5 specs with inline data, one per y axis; [] when there is nothing to draw (a table,
    no rows, or no numeric measure: measure names the columns do not have are ignored)."""
    prepared = _prepare(request)
    if prepared is None:
        return []
    if request.kind == "kpi":
        return [_kpi_spec(request, prepared)]
    if request.kind in ("pie", "donut"):
        spec = _pie_spec(request, prepared)
        return [spec] if spec else []
    if prepared.series_kept:
        groups = [[m] for m in prepared.measures]
    else:
        groups = _magnitude_groups(prepared)
    specs = []
    for group in groups:
        title = request.title if len(groups) == 1 else f"{request.title} — {', '.join(m.label for m in group)}"
        specs.append(_xy_spec(request, prepared, group, title))
    return specs


def _base(request: ChartRequest, title: str, notes: list[str], fmt: NumberFormat, width: int, height: int) -> dict:
    number_locale = _format_locale(request.locale, fmt)
    time_locale = vl_convert.get_time_format_locale(_d3_locale_name(request.locale, time=True))
    spec: dict = {
        "title": {"text": title} | ({"subtitle": "Showing " + "; ".join(notes)} if notes else {}),
        "width": width,
        "height": height,
        "autosize": {"type": "fit", "contains": "padding"},
        "background": "white",
        "config": {
            "font": FONT,
            "view": {"stroke": None},
            "title": {"anchor": "start", "fontSize": 14, "color": "#222222", "subtitleColor": "#666666"},
            "axis": {
                "gridColor": "#e6e6e6",
                "gridDash": [],
                "domainColor": "#888888",
                "tickColor": "#888888",
                "labelColor": "#333333",
                "titleColor": "#333333",
                "labelFontSize": 11,
                "titleFontSize": 11,
                "titleFontWeight": "normal",
                "labelOverlap": True,
                "labelLimit": 180,
            },
            "axisX": {"grid": False},
            "legend": {"orient": "bottom", "labelFontSize": 11, "titleFontSize": 11, "labelLimit": 220},
            "range": {"category": list(PALETTE)},
        },
        "usermeta": {"biapp": {"formatLocale": number_locale, "timeFormatLocale": time_locale}},
    }
    return spec


def _label_angle(count: int, chars: int) -> int:
    """Level labels when they fit their band, else slanted, else upright: Vega hides labels whose
    bounding boxes overlap, and a slanted label's box is wide."""
    band, width = WIDTH * 0.85 / max(count, 1), chars * 6.5  # ~6.5 px a character at 11 px
    if width <= band * 0.9:
        return 0
    return -40 if width * 0.77 <= band else -90


def _shorten(label: str, chars: int) -> str:
    """Cut long labels by characters: Vega's own pixel truncation measures text over and over,
    which costs vl-convert close to a second on a crowded axis."""
    return f"length({label}) > {chars} ? substring({label}, 0, {chars - 1}) + '…' : {label}"


def _x_encoding(request: ChartRequest, prepared: _Prepared) -> tuple[dict, dict]:
    """The x encoding and the data parse directive it needs."""
    count = len(dict.fromkeys(prepared.x_values))
    if not prepared.temporal:
        longest = max((len(v) for v in prepared.x_values), default=0)
        angle = _label_angle(count, min(longest, 20))
        axis = {"labelAngle": angle, "labelExpr": _shorten("datum.label", 16 if angle == -90 else 20)}
        return {"field": "x", "type": "ordinal", "title": prepared.x_label, "sort": None, "axis": axis}, {}
    interval, unit, label_format = TIME_GRAINS[prepared.grain]
    dated_only = prepared.grain in ("day", "month", "year")
    parse = {"x": "utc:'%Y-%m-%d'" if dated_only else "utc:'%Y-%m-%dT%H:%M:%S'"}
    if request.kind == "bar":
        # Bars need a band per period (and xOffset needs a discrete scale): one ordinal band per
        # timeUnit step, sorted ascending, so no period is labelled twice.
        axis = {"format": _time_format(prepared, label_format), "labelAngle": -40 if count > 12 else 0}
        encoding = {"field": "x", "type": "ordinal", "timeUnit": unit, "title": prepared.x_label, "sort": "ascending"}
        return encoding | {"axis": axis}, parse
    axis: dict = {"labelAngle": 0}
    first, last = (datetime.fromisoformat(prepared.x_values[i]) for i in (0, -1))
    if _steps(first, last, prepared.grain) <= 12:
        # Few periods: tick once per period, else d3 would add ticks (and labels) between them.
        axis |= {"tickCount": {"interval": interval, "step": 1}, "format": _time_format(prepared, label_format)}
    if not dated_only:
        # Times of day in 24 h (d3's default says "09 PM" in every locale), the date at midnight.
        midnight = "utchours(datum.value) == 0 && utcminutes(datum.value) == 0"
        axis["labelExpr"] = f"{midnight} ? utcFormat(datum.value, '%b %d') : utcFormat(datum.value, '%H:%M')"
    encoding = {"field": "x", "type": "temporal", "title": prepared.x_label, "scale": {"type": "utc"}}
    return encoding | {"axis": axis}, parse


def _time_format(prepared: _Prepared, label_format: str) -> str:
    """The grain's label format (utc, like the scale), with the year when days span several years."""
    if prepared.grain == "day" and prepared.x_values[0][:4] != prepared.x_values[-1][:4]:
        return "%b %d, %Y"
    return label_format


def _steps(first: datetime, last: datetime, grain: str | None) -> float:
    seconds = (last - first).total_seconds()
    per = {"year": 365 * 86400, "month": 28 * 86400, "day": 86400, "hour": 3600, "minute": 60}[grain or "day"]
    return seconds / per


def _y_encoding(request: ChartRequest, group: list[_Measure], number_locale: dict, stacked: bool) -> dict:
    fmt = group[0].fmt
    if fmt.kind == "percent":
        axis: dict = {"format": "~%"}
    else:
        # Not d3's "~s": its SI prefixes say k and G; the expression writes K/M/B (or Tsd./Mio./Mrd.).
        axis = {"labelExpr": _compact_expr("datum.value", fmt, request.locale, number_locale)}
    axis["tickCount"] = Y_TICKS  # the same count as the scale's nice(): the top of the axis gets a label
    if all(m.integer for m in group):
        axis["tickMinStep"] = 1
    title = group[0].label if len(group) == 1 else None
    return {
        "field": "value",
        "type": "quantitative",
        "title": title,
        "axis": axis,
        "stack": "zero" if stacked else None,
        "scale": {"nice": Y_TICKS},
    }


def _xy_spec(request: ChartRequest, prepared: _Prepared, group: list[_Measure], title: str) -> dict:
    fmt = group[0].fmt
    spec = _base(request, title, prepared.notes, fmt, WIDTH, HEIGHT)
    number_locale = spec["usermeta"]["biapp"]["formatLocale"]
    x_encoding, parse = _x_encoding(request, prepared)
    rows = []
    if prepared.series_kept:
        kept = set(prepared.series_kept)
        measure = group[0]
        for x, name, values in zip(prepared.x_values, prepared.series_values, prepared.values, strict=True):
            if name in kept:
                rows.append({"x": x, "series": name, "value": values[measure.name]})
        colors, domain, legend_title = list(PALETTE[: len(kept)]), prepared.series_kept, prepared.series_label
    else:
        for x, values in zip(prepared.x_values, prepared.values, strict=True):
            rows.extend({"x": x, "series": m.label, "value": values[m.name]} for m in group)
        colors, domain, legend_title = [m.color for m in group], [m.label for m in group], None
    many = len(domain) > 1
    stacked = request.kind == "area" and bool(prepared.series_kept)
    encoding: dict = {
        "x": x_encoding,
        "y": _y_encoding(request, group, number_locale, stacked),
        "tooltip": [
            {"field": "x", "type": x_encoding["type"], "title": prepared.x_label}
            | ({"timeUnit": x_encoding["timeUnit"]} if "timeUnit" in x_encoding else {}),
            *([{"field": "series", "type": "nominal", "title": legend_title or "Measure"}] if many else []),
            {"field": "value", "type": "quantitative", "title": "Value" if len(group) > 1 else group[0].label}
            | {"format": fmt.d3()},
        ],
    }
    if many:
        encoding["color"] = {
            "field": "series",
            "type": "nominal",
            "title": legend_title,
            "sort": domain,
            "scale": {"domain": domain, "range": colors},
            "legend": {"labelExpr": _shorten("datum.label", 28)},
        }
    spec["data"] = {"values": rows} | ({"format": {"parse": parse}} if parse else {})
    spec["mark"] = _mark(request.kind, prepared, many, colors[0])
    if request.kind == "bar" and many:
        encoding["xOffset"] = {"field": "series", "type": "nominal", "sort": domain, "scale": {"paddingInner": 0.05}}
    spec["encoding"] = encoding
    return spec


def _mark(kind: str, prepared: _Prepared, many: bool, color: str) -> dict:
    single = {} if many else {"color": color}
    if kind == "bar":
        return {"type": "bar", "cornerRadiusEnd": 1} | single
    points = len(dict.fromkeys(prepared.x_values)) <= 40
    line = {"type": "line", "strokeWidth": 2, "point": {"size": 24, "filled": True} if points else False}
    if kind == "line":
        return line | single
    # Stacked areas read per layer; overlaid ones (measures, no series) stay translucent.
    return {"type": "area", "line": {"strokeWidth": 1.5}, "opacity": 0.85 if many and prepared.series_kept else 0.4} | (
        single
    )


# --- pie, donut ---------------------------------------------------------------------------------


def _slices(prepared: _Prepared) -> list[tuple[str, float]]:
    """Slices by x of the first measure, summed per label, largest first, the tail summed into Other."""
    measure = prepared.measures[0].name
    totals: dict[str, float] = {}
    for x, values in zip(prepared.x_values, prepared.values, strict=True):
        value = values[measure]
        if value is not None and value > 0:  # a pie cannot show a negative or empty share
            totals[x] = totals.get(x, 0.0) + value
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    if len(ranked) > MAX_SLICES:
        ranked = ranked[: MAX_SLICES - 1] + [(OTHER, sum(v for _, v in ranked[MAX_SLICES - 1 :]))]
    return ranked


def _pie_spec(request: ChartRequest, prepared: _Prepared) -> dict | None:
    slices = _slices(prepared)
    if not slices:
        return None
    measure = prepared.measures[0]
    spec = _base(request, request.title, prepared.notes, measure.fmt, WIDTH, HEIGHT)
    total = sum(v for _, v in slices)
    labels = [label for label, _ in slices]
    colors = [OTHER_COLOR if label == OTHER else PALETTE[n % len(PALETTE)] for n, label in enumerate(labels)]
    radius = HEIGHT // 2 - 40
    spec["data"] = {
        "values": [
            {"x": label, "value": value, "share": value / total, "rank": n} for n, (label, value) in enumerate(slices)
        ]
    }
    spec["encoding"] = {
        "theta": {"field": "value", "type": "quantitative", "stack": True},
        "order": {"field": "rank", "type": "quantitative", "sort": "ascending"},
        "color": {
            "field": "x",
            "type": "nominal",
            "title": prepared.x_label,
            "sort": labels,
            "scale": {"domain": labels, "range": colors},
            "legend": {"orient": "right", "labelExpr": _shorten("datum.label", 28)},
        },
        "tooltip": [
            {"field": "x", "type": "nominal", "title": prepared.x_label},
            {"field": "value", "type": "quantitative", "title": measure.label, "format": measure.fmt.d3()},
            {"field": "share", "type": "quantitative", "title": "Share", "format": ".1%"},
        ],
    }
    arc = {"type": "arc", "outerRadius": radius, "stroke": "white", "strokeWidth": 1}
    if request.kind == "donut":
        arc["innerRadius"] = round(radius * 0.55)
    label = {"type": "text", "radius": radius + 16, "fontSize": 11, "fill": "#333333"}
    spec["layer"] = [
        {"mark": arc},
        # Shares outside the ring: readable on every slice colour; tiny slices stay unlabelled.
        {
            "mark": label,
            "transform": [{"filter": "datum.share >= 0.04"}],
            "encoding": {"text": {"field": "share", "format": ".0%"}},
        },
    ]
    return spec


# --- kpi ----------------------------------------------------------------------------------------


def kpi_values(request: ChartRequest) -> dict | None:
    """The KPI's number: the first measure of a single row, or its sum over many rows (a ratio is
    never summed: it takes the first row). Stored, and handed back as `previous` on the next run."""
    prepared = _prepare(request)
    if prepared is None:
        return None
    measure = prepared.measures[0]
    present = [value for value in _query_order(request, measure.name) if value is not None]
    if not present:
        return None
    value = present[0] if measure.fmt.kind == "percent" or len(present) == 1 else math.fsum(present)
    return {"measure": measure.name, "label": measure.label, "value": value, "format": _column_format(request, measure)}


def _query_order(request: ChartRequest, name: str) -> list[float | None]:
    index = next(i for i, c in enumerate(request.columns) if c.name == name)
    return [_number(r[index]) for r in request.rows]


def _column_format(request: ChartRequest, measure: _Measure) -> str | None:
    return next(c.format for c in request.columns if c.name == measure.name)


def _change(current: dict, previous: dict | None) -> float | None:
    if not previous or previous.get("measure") != current["measure"]:
        return None
    before = previous.get("value")
    if not isinstance(before, int | float) or before == 0:
        return None
    return (current["value"] - before) / abs(before)


def _kpi_line(text_field: str, y: int, **style) -> dict:
    """One left-aligned line of the card, placed in pixels: a card has no axes to place it by."""
    mark = {"type": "text", "x": 8, "y": y, "align": "left", "limit": KPI_WIDTH - 16} | style
    return {"mark": mark, "encoding": {"text": {"field": text_field}}}


def _kpi_spec(request: ChartRequest, prepared: _Prepared) -> dict:
    current = kpi_values(request) or {}
    measure = prepared.measures[0]
    spec = _base(request, "", [], measure.fmt, KPI_WIDTH, KPI_HEIGHT)
    del spec["title"]
    number_locale = spec["usermeta"]["biapp"]["formatLocale"]
    change = _change(current, request.previous)
    row: dict = {"caption": request.title or measure.label, "value": current.get("value"), "change": change}
    transform = [
        {"calculate": _full_expr("datum.value", measure.fmt, request.locale, number_locale), "as": "value_text"}
    ]
    layers = [
        _kpi_line("caption", y=22, fontSize=14, fill="#555555"),
        _kpi_line("value_text", y=72, fontSize=40, fontWeight="bold", fill="#222222"),
    ]
    if change is not None:
        row["previous"] = request.previous["value"]
        row["arrow"] = "▲" if change > 0 else "▼" if change < 0 else "■"
        row["tone"] = UP_COLOR if change > 0 else DOWN_COLOR if change < 0 else FLAT_COLOR
        previous_text = _full_expr("datum.previous", measure.fmt, request.locale, number_locale)
        transform.append(
            {
                "calculate": f"datum.arrow + ' ' + format(abs(datum.change), '.1%') + ' vs ' + {previous_text}",
                "as": "change_text",
            }
        )
        change_line = _kpi_line("change_text", y=118, fontSize=16)
        change_line["encoding"]["color"] = {"field": "tone", "type": "nominal", "scale": None}
        layers.append(change_line)
    spec["data"] = {"values": [row]}
    spec["transform"] = transform
    spec["layer"] = layers
    return spec


# --- rendering, alt text ----------------------------------------------------------------------------


def _convert_options(spec: dict) -> dict:
    meta = spec.get("usermeta", {}).get("biapp", {})
    return {
        "vl_version": VEGA_LITE_VERSION,
        "format_locale": meta.get("formatLocale"),
        "time_format_locale": meta.get("timeFormatLocale"),
        "allowed_base_urls": [],  # inline data only: no URL, file or image is ever fetched
    }


def warm_up() -> None:
    """Load the JavaScript engine and Vega-Lite now (~0.5 s, once per process), not in the first report."""
    to_svg(
        {
            "data": {"values": [{"value": 1}]},
            "mark": "point",
            "encoding": {"x": {"field": "value", "type": "quantitative"}},
        }
    )


def to_svg(spec: dict) -> str:
    return vl_convert.vegalite_to_svg(spec, **_convert_options(spec))


def to_png(spec: dict, *, scale: float = 2.0) -> bytes:
    return vl_convert.vegalite_to_png(spec, scale=scale, **_convert_options(spec))


def alt_text(request: ChartRequest) -> str:
    """One sentence that says what the chart shows; "" when there is no chart."""
    prepared = _prepare(request)
    if prepared is None:
        return ""
    measures = _and([m.label for m in prepared.measures])
    if request.kind == "kpi":
        return _kpi_alt(request, prepared)
    if request.kind in ("pie", "donut"):
        slices = _slices(prepared)
        if not slices:
            return ""
        share = slices[0][1] / sum(v for _, v in slices)
        name = "Pie" if request.kind == "pie" else "Donut"
        return (
            f"{name} chart of {prepared.measures[0].label} by {prepared.x_label}, {len(slices)} slices, "
            f"largest {slices[0][0]} ({share:.0%})."
        )
    count = len(dict.fromkeys(prepared.x_values))
    text = f"{request.kind.capitalize()} chart of {measures} by {prepared.x_label}"
    if prepared.series_kept:
        text += f" and {prepared.series_label} ({_and(prepared.series_kept)})"
    if request.kind == "bar":
        per = len(prepared.series_kept) or len(prepared.measures)
        text += f", {count} bars" if per == 1 else f", {count} groups of {per} bars"
    else:
        text += f", {count} points"
    if prepared.temporal and prepared.x_values:
        text += f" from {prepared.x_values[0][:10]} to {prepared.x_values[-1][:10]}"
    panels = len(build_specs(request))
    return text + (f", in {panels} panels." if panels > 1 else ".")


def _kpi_alt(request: ChartRequest, prepared: _Prepared) -> str:
    current = kpi_values(request)
    if current is None:
        return ""
    measure = prepared.measures[0]
    number_locale = _format_locale(request.locale, measure.fmt)
    text = f"{request.title or measure.label}: {_py_number(current['value'], measure.fmt, number_locale)}"
    change = _change(current, request.previous)
    if change is not None:
        before = _py_number(request.previous["value"], measure.fmt, number_locale)
        direction = "up" if change > 0 else "down"
        text += f", {direction} {abs(change):.1%} from {before}" if change else f", unchanged from {before}"
    return text + "."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
