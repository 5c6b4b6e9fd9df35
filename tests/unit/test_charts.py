"""Report charts: the Vega-Lite specs answer the question, and vl-convert renders them offline."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from shared.charts import (
    MAX_POINTS,
    MAX_SERIES,
    MAX_SLICES,
    ChartRequest,
    alt_text,
    build_specs,
    kpi_values,
    to_png,
    to_svg,
)
from shared.query.columns import ColumnInfo as C

REGIONS = ("North", "South", "West")


def daily_revenue_newest_first(days: int = 60) -> list[tuple]:
    start = date(2024, 1, 1)
    rows = [
        (start + timedelta(days=d), region, Decimal(1000 + 300 * n + 15 * d))
        for d in range(days)
        for n, region in enumerate(REGIONS)
    ]
    return rows[::-1]


def line_by_region(**overrides) -> ChartRequest:
    columns = [C("day", "date", "Day"), C("region", "string", "Region"), C("revenue", "decimal", "Revenue", "currency")]
    fields = {"series": "region"} | overrides
    return ChartRequest("line", "Daily revenue", columns, daily_revenue_newest_first(), **fields)


def sales_by_region(kind: str = "bar", locale: str = "de-DE") -> ChartRequest:
    columns = [
        C("region", "string", "Region"),
        C("revenue", "decimal", "Revenue", "currency:EUR"),
        C("orders", "integer", "Orders", "integer"),
        C("units", "integer", "Units", "integer"),
    ]
    rows = [
        ("Nord", Decimal("212345.50"), 412, 980),
        ("Süd", Decimal("180020"), 380, 850),
        ("West", Decimal("95000"), 210, 400),
        ("Ost", Decimal("61000.25"), 150, 290),
        ("Mitte", Decimal("198000"), 405, 900),
    ]
    return ChartRequest(kind, "Sales by region", columns, rows, locale=locale)


def svg_texts(svg: str) -> list[str]:
    return [t.replace("&amp;", "&") for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def axis_labels(svg: str, axis_title: str) -> list[str]:
    """Tick labels of the axis titled `axis_title` (Vega writes labels, then the title, per axis)."""
    groups = re.findall(r'role-axis-label"[^>]*>(.*?)</g>.*?role-axis-title"[^>]*>(.*?)</g>', svg, flags=re.S)
    for labels, title in groups:
        if axis_title in title:
            return svg_texts(labels)
    raise AssertionError(f"no axis titled {axis_title!r}")


def line_strokes(svg: str) -> set[str]:
    paths = re.findall(r'<path[^>]*aria-roledescription="line mark"[^>]*>', svg)
    return {re.search(r'stroke="([^"]+)"', p).group(1) for p in paths}


def test_each_series_value_gets_its_own_line_and_colour():
    [spec] = build_specs(line_by_region())

    color = spec["encoding"]["color"]
    assert color["field"] == "series"
    assert set(color["scale"]["domain"]) == set(REGIONS)
    assert len(set(color["scale"]["range"])) == 3
    assert {row["series"] for row in spec["data"]["values"]} == set(REGIONS)
    assert len(line_strokes(to_svg(spec))) == 3


def test_grouped_bars_are_offset_per_series_value():
    request = line_by_region()
    [spec] = build_specs(ChartRequest("bar", **{k: v for k, v in vars(request).items() if k != "kind"}))

    assert spec["encoding"]["xOffset"]["field"] == "series"
    assert spec["encoding"]["color"]["field"] == "series"


def test_series_beyond_the_cap_are_left_out_and_the_subtitle_says_so():
    names = [f"Shop {n:02d}" for n in range(MAX_SERIES + 4)]
    rows = [(date(2024, 1, d), name, 100.0 * (n + 1)) for d in range(1, 4) for n, name in enumerate(names)]
    request = ChartRequest("line", "Shops", [C("day", "date"), C("shop"), C("sales", "decimal")], rows, series="shop")

    [spec] = build_specs(request)

    kept = spec["encoding"]["color"]["scale"]["domain"]
    assert len(kept) == MAX_SERIES
    assert kept[0] == names[-1]  # the largest totals are the ones kept
    assert names[0] not in kept
    assert f"top {MAX_SERIES} of {len(names)}" in spec["title"]["subtitle"]


def test_newest_first_dates_run_forward_on_a_temporal_axis():
    [spec] = build_specs(line_by_region())

    x = spec["encoding"]["x"]
    assert x["type"] == "temporal"
    assert x["scale"]["type"] == "utc"
    days = [row["x"] for row in spec["data"]["values"]]
    assert days == sorted(days)
    assert days[0] == "2024-01-01" and days[-1] == "2024-02-29"
    assert spec["data"]["format"]["parse"] == {"x": "utc:'%Y-%m-%d'"}


def test_a_widget_that_names_no_fields_still_pivots_and_runs_forward_in_time():
    columns = [C("region", "string", "Region"), C("day", "date", "Day"), C("revenue", "decimal", "Revenue")]
    rows = [(region, day, revenue) for day, region, revenue in daily_revenue_newest_first()]
    [spec] = build_specs(ChartRequest("line", "Daily revenue by region", columns, rows))

    assert spec["encoding"]["x"]["type"] == "temporal", "a line over dated rows runs over time"
    assert spec["encoding"]["color"]["field"] == "series", "the other category column becomes the series"
    assert {row["series"] for row in spec["data"]["values"]} == set(REGIONS)
    days = [row["x"] for row in spec["data"]["values"]]
    assert days == sorted(days)


def test_dates_typed_as_strings_by_raw_sql_still_make_a_time_axis():
    rows = [("2024-03-03", 3), ("2024-03-01", 1), ("2024-03-02", 2)]
    [spec] = build_specs(ChartRequest("line", "Raw", [C("d"), C("n", "integer")], rows))

    assert spec["encoding"]["x"]["type"] == "temporal"
    assert [row["x"] for row in spec["data"]["values"]] == ["2024-03-01", "2024-03-02", "2024-03-03"]


def test_aware_datetimes_are_shown_in_the_report_time_zone():
    rows = [(datetime(2024, 3, 1, 23, 30, tzinfo=UTC), 5), (datetime(2024, 3, 1, 22, 30, tzinfo=UTC), 4)]
    request = ChartRequest("line", "Logins", [C("at", "datetime"), C("n", "integer")], rows, timezone="Europe/Berlin")

    [spec] = build_specs(request)

    assert [row["x"] for row in spec["data"]["values"]] == ["2024-03-01T23:30:00", "2024-03-02T00:30:00"]
    assert spec["data"]["format"]["parse"] == {"x": "utc:'%Y-%m-%dT%H:%M:%S'"}


def test_bars_over_months_get_one_band_and_one_label_per_month():
    rows = [(date(2024, m, 1), 1000 * m) for m in range(6, 0, -1)]
    request = ChartRequest("bar", "Monthly", [C("month", "date", "Month"), C("sales", "integer", "Sales")], rows)

    [spec] = build_specs(request)

    assert spec["encoding"]["x"]["timeUnit"] == "utcyearmonth"
    assert spec["encoding"]["x"]["sort"] == "ascending"
    labels = axis_labels(to_svg(spec), "Month")
    assert labels == ["Jan 2024", "Feb 2024", "Mar 2024", "Apr 2024", "May 2024", "Jun 2024"]


def test_a_line_over_three_days_has_no_ticks_between_the_days():
    rows = [(date(2024, 3, d), d) for d in (3, 2, 1)]
    [spec] = build_specs(ChartRequest("line", "Days", [C("day", "date", "Day"), C("n", "integer", "N")], rows))

    assert axis_labels(to_svg(spec), "Day") == ["Mar 01", "Mar 02", "Mar 03"]


def test_hourly_axis_reads_in_24_hours_with_the_date_at_midnight():
    rows = [(datetime(2024, 3, 1, 21) + timedelta(hours=h), h) for h in range(5)][::-1]
    [spec] = build_specs(ChartRequest("line", "Hourly", [C("at", "datetime", "At"), C("n", "integer", "N")], rows))

    assert axis_labels(to_svg(spec), "At") == ["21:00", "22:00", "23:00", "Mar 02", "01:00"]


def test_revenue_gets_its_own_axis_apart_from_orders_and_units():
    specs = build_specs(sales_by_region())

    assert len(specs) == 2
    measures_per_spec = [{row["series"] for row in spec["data"]["values"]} for spec in specs]
    assert measures_per_spec == [{"Revenue"}, {"Orders", "Units"}]
    assert specs[0]["encoding"]["y"]["title"] == "Revenue"
    assert "Revenue" in specs[0]["title"]["text"] and "Orders, Units" in specs[1]["title"]["text"]
    assert specs[1]["encoding"]["xOffset"]["field"] == "series"


def test_magnitude_alone_splits_measures_of_the_same_unit():
    rows = [("a", 200_000.0, 410, 980), ("b", 150_000.0, 380, 850)]
    columns = [C("k"), C("revenue", "decimal"), C("orders", "integer"), C("units", "integer")]

    specs = build_specs(ChartRequest("line", "Plain numbers", columns, rows))

    assert [{row["series"] for row in spec["data"]["values"]} for spec in specs] == [{"revenue"}, {"orders", "units"}]


def test_percent_and_plain_numbers_never_share_an_axis():
    rows = [("a", 0.5, 0.9), ("b", 0.4, 0.7)]
    columns = [C("k"), C("rate", "decimal", format="percent"), C("score", "decimal")]

    assert len(build_specs(ChartRequest("bar", "Units", columns, rows))) == 2


def test_measures_of_a_similar_size_share_one_chart():
    rows = [("a", 100, 250), ("b", 120, 300)]
    specs = build_specs(ChartRequest("bar", "Two", [C("k"), C("x1", "integer"), C("x2", "integer")], rows))

    assert len(specs) == 1


def test_german_euro_axis_is_compact_and_never_raw():
    revenue, _ = build_specs(sales_by_region(locale="de-DE"))

    labels = axis_labels(to_svg(revenue), "Revenue")

    assert "200\u00a0Tsd.\u00a0€" in labels
    assert "0\u00a0€" in labels
    assert not any(re.fullmatch(r"[\d.,\s€]+", label.replace("\u00a0", " ")) and len(label) > 5 for label in labels)
    assert revenue["encoding"]["tooltip"][-1]["format"] == "$,.2f"
    assert revenue["usermeta"]["biapp"]["formatLocale"]["currency"] == ["", "\u00a0€"]


def test_english_euro_axis_puts_the_symbol_first():
    revenue, _ = build_specs(sales_by_region(locale="en-US"))

    assert "€200K" in axis_labels(to_svg(revenue), "Revenue")


def test_percent_measures_show_percent_on_the_axis():
    rows = [(date(2024, 3, d), 0.10 + d / 100) for d in range(1, 6)]
    request = ChartRequest("line", "Conversion", [C("day", "date"), C("rate", "decimal", "Rate", "percent:1")], rows)

    [spec] = build_specs(request)

    labels = axis_labels(to_svg(spec), "Rate")
    assert "10%" in labels
    assert all(label.endswith("%") for label in labels)
    assert spec["encoding"]["tooltip"][-1]["format"] == ".1%"


def test_pie_keeps_the_largest_slices_first_and_sums_the_rest_into_other():
    rows = [(f"Country {n}", 1000.0 / (n + 1)) for n in range(12)][::-1] + [("Refunds", -50.0), ("Unknown", None)]
    [spec] = build_specs(ChartRequest("pie", "Share", [C("country"), C("rev", "decimal")], rows))

    slices = spec["data"]["values"]
    assert len(slices) == MAX_SLICES
    assert [s["x"] for s in slices[:2]] == ["Country 0", "Country 1"]
    assert slices[-1]["x"] == "Other"
    assert slices[-1]["value"] == pytest.approx(sum(1000.0 / (n + 1) for n in range(MAX_SLICES - 1, 12)))
    values = [s["value"] for s in slices[:-1]]
    assert values == sorted(values, reverse=True)
    assert "innerRadius" not in spec["layer"][0]["mark"]


def test_donut_is_a_pie_with_a_hole():
    rows = [("a", 3), ("b", 1)]
    [spec] = build_specs(ChartRequest("donut", "Share", [C("k"), C("v", "integer")], rows))

    assert spec["layer"][0]["mark"]["innerRadius"] > 0
    assert [s["x"] for s in spec["data"]["values"]] == ["a", "b"]


def kpi_request(value, previous=None, fmt="currency:EUR", locale="de-DE") -> ChartRequest:
    rows = value if isinstance(value, list) else [(value,)]
    columns = [C("rev", "decimal", "Revenue", fmt)]
    return ChartRequest("kpi", "Revenue this week", columns, rows, locale=locale, previous=previous)


def test_kpi_shows_the_change_against_the_previous_run():
    first = kpi_values(kpi_request(Decimal("189000")))
    request = kpi_request(Decimal("212345.67"), previous=first)

    [spec] = build_specs(request)

    assert first == {"measure": "rev", "label": "Revenue", "value": 189000.0, "format": "currency:EUR"}
    row = spec["data"]["values"][0]
    assert row["change"] == pytest.approx(0.1235, abs=1e-4)
    assert row["arrow"] == "▲"
    texts = svg_texts(to_svg(spec))
    assert "212.345,67\u00a0€" in texts
    assert "▲ 12,4% vs 189.000,00\u00a0€" in texts
    assert alt_text(request) == "Revenue this week: 212.345,67\u00a0€, up 12.4% from 189.000,00\u00a0€."


def test_kpi_falling_is_marked_down_in_another_colour():
    up = build_specs(kpi_request(110, previous={"measure": "rev", "value": 100}))[0]["data"]["values"][0]
    down = build_specs(kpi_request(90, previous={"measure": "rev", "value": 100}))[0]["data"]["values"][0]

    assert (up["arrow"], down["arrow"]) == ("▲", "▼")
    assert up["tone"] != down["tone"]


def test_kpi_sums_many_rows_and_ignores_a_previous_value_of_another_measure():
    request = kpi_request([(10,), (20,), (None,)], previous={"measure": "orders", "value": 5})

    [spec] = build_specs(request)

    assert kpi_values(request)["value"] == 30
    assert spec["data"]["values"][0]["change"] is None
    assert len(spec["layer"]) == 2  # caption and number, no change line


@pytest.mark.parametrize(
    "request_",
    [
        ChartRequest("table", "T", [C("k"), C("v", "integer")], [("a", 1)]),
        ChartRequest("bar", "T", [C("k"), C("v", "integer")], []),
        ChartRequest("bar", "T", [C("k"), C("note")], [("a", "b")]),
        ChartRequest("line", "T", [C("k"), C("v", "integer")], [("a", None), ("b", None)]),
        ChartRequest("pie", "T", [C("k"), C("v", "integer")], [("a", -1)]),
        ChartRequest("bar", "T", [C("k"), C("v", "integer")], [("a", 1)], measures=("missing",)),
    ],
    ids=["table", "no rows", "nothing numeric", "all empty", "no positive slice", "unknown measure"],
)
def test_nothing_to_draw_gives_no_specs(request_):
    assert build_specs(request_) == []
    assert alt_text(request_) == ""


def test_svg_renders_offline_with_no_script_even_from_hostile_text():
    rows = [("<script>alert(1)</script>", 5), ("ok", 3)]
    [spec] = build_specs(ChartRequest("bar", "<b>Title</b>", [C("k", label="Kind"), C("v", "integer")], rows))

    svg = to_svg(spec)

    assert svg.startswith("<svg")
    assert "<script" not in svg.lower()
    assert "&lt;script&gt;" in svg
    assert "http" not in json.dumps(spec)  # no URL anywhere: data, fonts and images are inline


def test_png_is_a_png():
    [spec] = build_specs(line_by_region())

    assert to_png(spec).startswith(b"\x89PNG\r\n\x1a\n")
    assert len(to_png(spec, scale=1.0)) < len(to_png(spec, scale=2.0))


def test_columns_named_with_dots_and_brackets_still_draw():
    rows = [("x[0]", 1.5), ("x[1]", 2.5)]
    columns = [C("dim.name[0]", "string", "Dimension"), C("a.b", "decimal", "A dot B")]

    [spec] = build_specs(ChartRequest("bar", "Dots", columns, rows, x="dim.name[0]", measures=("a.b",)))

    assert [row["value"] for row in spec["data"]["values"]] == [1.5, 2.5]
    assert "A dot B" in svg_texts(to_svg(spec))


def test_long_time_series_keep_the_newest_points():
    start = datetime(2024, 1, 1)
    rows = [(start + timedelta(hours=h), h) for h in range(MAX_POINTS + 100)][::-1]

    [spec] = build_specs(ChartRequest("line", "Hourly", [C("at", "datetime"), C("n", "integer")], rows))

    xs = [row["x"] for row in spec["data"]["values"]]
    assert len(xs) == MAX_POINTS
    assert xs[-1] == (start + timedelta(hours=MAX_POINTS + 99)).isoformat()
    assert "latest 500" in spec["title"]["subtitle"]


def test_alt_text_names_the_chart_in_one_sentence():
    rows = [("North", 5), ("South", 3), ("East", 2), ("West", 1), ("Mitte", 4)]
    request = ChartRequest("bar", "Revenue", [C("region", label="Region"), C("rev", "decimal", "Revenue")], rows)

    assert alt_text(request) == "Bar chart of Revenue by Region, 5 bars."
    assert alt_text(line_by_region()).startswith(
        "Line chart of Revenue by Day and Region (West, South and North), 60 points from 2024-01-01 to 2024-02-29"
    )
