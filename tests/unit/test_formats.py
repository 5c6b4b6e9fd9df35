"""Numbers, dates and Excel codes in the reader's locale (shared/formats.py)."""

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from shared.formats import (
    NumberFormat,
    check_locale,
    excel_format,
    format_date,
    format_datetime,
    format_number,
    format_value,
    is_right_aligned,
    locale_currency,
    parse_format,
)
from shared.query.columns import ColumnInfo

NB = "\u00a0"  # CLDR's no-break space between a number and its sign
NNB = "\u202f"  # French digit grouping


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "locale", "expected"),
    [
        ("currency", "de-DE", f"217.399,17{NB}€"),
        ("currency", "en-US", "$217,399.17"),
        ("currency", "en-GB", "£217,399.17"),
        ("currency:EUR", "en-US", "€217,399.17"),
        ("currency:USD", "de-DE", f"217.399,17{NB}$"),
        ("currency:EUR", "fr-FR", f"217{NNB}399,17{NB}€"),
        ("currency:EUR:0", "de-DE", f"217.399{NB}€"),
        ("currency:JPY", "en-US", "¥217,399"),
    ],
)
def test_currency_follows_the_locale_and_the_code(fmt, locale, expected):
    assert format_number(217399.17, fmt, locale) == expected


@pytest.mark.parametrize(
    ("fmt", "locale", "expected"),
    [
        ("percent:1", "en-US", "12.3%"),
        ("percent:1", "de-DE", f"12,3{NB}%"),
        ("percent", "en-US", "12.3%"),
        ("percent:0", "fr-FR", f"12{NB}%"),
        ("percent:2", "en-US", "12.35%"),
    ],
)
def test_percent_values_are_fractions_shown_in_the_locales_style(fmt, locale, expected):
    assert format_number(0.12345, fmt, locale) == expected


@pytest.mark.parametrize(
    ("value", "fmt", "locale", "expected"),
    [
        (200_000, "compact", "en-US", "200K"),
        (1_234_567, "compact", "en-US", "1.2M"),
        (1_234_567, "compact:EUR", "en-US", "€1.2M"),
        (1_234_567, "compact", "de-DE", f"1,2{NB}Mio."),
        (1_234_567, "compact:EUR", "de-DE", f"1,2{NB}Mio.{NB}€"),
        (200_000, "compact", "de-DE", "200.000"),  # CLDR German has no short unit for thousands
        (200_000, "compact:EUR", "de-DE", f"200.000{NB}€"),
        (200_000, "compact", "fr-FR", f"200{NB}k"),
        (-1_234_567, "compact", "en-US", "-1.2M"),
        (950, "compact", "en-US", "950"),
    ],
)
def test_compact_numbers_use_the_locales_short_units(value, fmt, locale, expected):
    assert format_number(value, fmt, locale) == expected


def test_unformatted_decimals_keep_the_places_they_were_stored_with():
    assert format_number(Decimal("1069.40"), None, "de-DE") == "1.069,40"
    assert format_number(Decimal("1069.40"), None, "en-US") == "1,069.40"
    assert format_number(Decimal("3"), None, "en-US") == "3"


def test_unformatted_integers_are_grouped_but_years_stay_as_written():
    assert format_number(1_234_567, None, "en-US") == "1,234,567"
    assert format_number(1_234_567, None, "de-DE") == "1.234.567"
    assert format_number(2026, None, "en-US") == "2026"


def test_unformatted_floats_show_six_significant_digits_without_losing_whole_digits():
    assert format_number(1234.56789, None, "en-US") == "1,234.57"
    assert format_number(0.000123456789, None, "en-US") == "0.000123457"
    assert format_number(12345678.9, None, "de-DE") == "12.345.679"
    assert format_number(0.5, None, "de-DE") == "0,5"


def test_rounding_is_half_up_like_excel_and_never_shows_minus_zero():
    assert format_number(0.125, "decimal", "en-US") == "0.13"
    assert format_number(2.5, "integer", "en-US") == "3"
    assert format_number(-0.001, "decimal", "en-US") == "0.00"
    assert format_number(-0.00001, "percent", "de-DE") == f"0,0{NB}%"


def test_decimal_places_come_from_the_format():
    assert format_number(1234.5, "decimal:3", "de-DE") == "1.234,500"
    assert format_number(1234.5, "decimal", "en-US") == "1,234.50"
    assert format_number(1234.5, "decimal:0", "en-US") == "1,235"


# --- the format grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (None, None),
        ("", None),
        ("integer", NumberFormat("integer")),
        ("decimal:3", NumberFormat("decimal", 3)),
        ("percent", NumberFormat("percent")),
        ("currency", NumberFormat("currency")),
        ("currency:eur", NumberFormat("currency", None, "EUR")),
        ("currency:EUR:0", NumberFormat("currency", 0, "EUR")),
        ("compact:USD", NumberFormat("compact", None, "USD")),
    ],
)
def test_format_strings_parse_into_their_parts(text, parsed):
    assert parse_format(text) == parsed


def test_an_unknown_format_names_itself_and_lists_the_grammar():
    with pytest.raises(ValueError) as error:
        parse_format("curency")
    assert str(error.value) == (
        "unknown format 'curency'; use integer, decimal[:places], percent[:places], "
        "currency[:ISO code[:places]] or compact[:ISO code]"
    )


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("decimal:x", "'x'"),
        ("decimal:11", "'11'"),
        ("percent:-1", "'-1'"),
        ("currency:EURO", "'EURO'"),
        ("currency:XYZ", "'XYZ'"),
        ("currency:EUR:two", "'two'"),
        ("integer:2", "integer takes no options"),
        ("compact:2", "'2'"),
    ],
)
def test_a_bad_format_string_is_rejected_naming_the_bad_part(text, bad_part):
    with pytest.raises(ValueError, match=bad_part):
        parse_format(text)


@pytest.mark.parametrize(
    ("text", "normalised"), [("de-de", "de-DE"), ("de_DE", "de-DE"), ("EN_us", "en-US"), ("fr", "fr")]
)
def test_locales_are_normalised_to_language_tags(text, normalised):
    assert check_locale(text) == normalised


@pytest.mark.parametrize("text", ["xx-YY", "de-XX", "", "english", "de_DE; drop"])
def test_unknown_locales_are_rejected(text):
    with pytest.raises(ValueError, match="locale"):
        check_locale(text)


def test_each_locale_has_its_countrys_currency():
    assert [locale_currency(x) for x in ("de-DE", "en-US", "en-GB", "de-CH", "en")] == [
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "USD",
    ]


# --- dates ----------------------------------------------------------------------------------


def test_dates_spell_the_month_or_use_the_locales_only_order():
    day = date(2026, 11, 28)
    assert format_date(day, "en-US") == "Nov 28, 2026"
    assert format_date(day, "en-GB") == "28 Nov 2026"
    assert format_date(day, "de-DE") == "28.11.2026"
    assert format_date(day, "fr-FR") == "28 nov. 2026"


def test_aware_datetimes_are_shown_in_the_report_zone_with_its_abbreviation():
    moment = datetime(2026, 11, 28, 14, 4, 5, tzinfo=UTC)
    assert format_datetime(moment, "de-DE", "Europe/Berlin") == "28.11.2026, 15:04:05 CET"
    assert format_datetime(datetime(2026, 7, 1, 12, tzinfo=UTC), "de-DE", "Europe/Berlin").endswith("14:00:00 CEST")
    assert format_datetime(moment, "en-US", "America/New_York") == "Nov 28, 2026, 9:04:05\u202fAM EST"
    assert format_datetime(moment, "en-US", "America/Sao_Paulo").endswith(" UTC-03")


def test_naive_datetimes_are_shown_as_stored():
    assert format_datetime(datetime(2026, 11, 28, 14, 4, 5), "de-DE", "Asia/Tokyo") == "28.11.2026, 14:04:05"


# --- cells ----------------------------------------------------------------------------------


def test_cells_dispatch_on_their_value_and_the_columns_format():
    revenue = ColumnInfo("revenue", "decimal", "Revenue", "currency")
    text = ColumnInfo("region")
    assert format_value(Decimal("217399.17"), revenue, "de-DE", "UTC") == f"217.399,17{NB}€"
    assert format_value(None, revenue, "de-DE", "UTC") == ""
    assert format_value(True, text, "de-DE", "UTC") == "Ja"
    assert format_value(False, text, "en-US", "UTC") == "No"
    assert format_value(b"abc", text, "en-US", "UTC") == "<3 bytes>"
    assert format_value(date(2026, 11, 28), text, "de-DE", "UTC") == "28.11.2026"
    assert format_value(time(15, 4, 5), text, "de-DE", "UTC") == "15:04:05"
    assert format_value("EMEA", revenue, "de-DE", "UTC") == "EMEA"


def test_numbers_are_right_aligned_and_text_is_not():
    assert is_right_aligned(ColumnInfo("n", "integer"))
    assert is_right_aligned(ColumnInfo("amount", "string", format="currency"))
    assert is_right_aligned(ColumnInfo("x"), sample=Decimal("1.5"))
    assert not is_right_aligned(ColumnInfo("region"), sample="EMEA")
    assert not is_right_aligned(ColumnInfo("flag", "boolean"), sample=True)
    assert not is_right_aligned(ColumnInfo("odd", format="curency"))


# --- Excel ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "locale", "code"),
    [
        ("currency", "de-DE", '#,##0.00" €"'),
        ("currency:EUR", "de-DE", '#,##0.00" €"'),
        ("currency", "en-US", '"$"#,##0.00'),
        ("currency:EUR", "en-US", '"€"#,##0.00'),
        ("currency:GBP", "en-GB", '"£"#,##0.00'),
        ("currency:JPY", "en-US", '"¥"#,##0'),
        ("currency:EUR:0", "de-DE", '#,##0" €"'),
        ("percent:1", "de-DE", "0.0%"),
        ("percent", "en-US", "0.0%"),
        ("percent:0", "en-US", "0%"),
        ("integer", "de-DE", "#,##0"),
        ("decimal", "de-DE", "#,##0.00"),
        ("decimal:3", "en-US", "#,##0.000"),
        ("compact", "en-US", "#,##0"),
        ("compact:EUR", "de-DE", '#,##0" €"'),
    ],
)
def test_excel_codes_are_locale_free_but_carry_the_locales_currency_symbol(fmt, locale, code):
    assert excel_format(fmt, locale) == code


def test_a_euro_column_in_german_shows_no_dollar_sign():
    code = excel_format("currency:EUR", "de-DE")
    assert "€" in code and "$" not in code


def test_columns_without_a_format_get_excels_general_unless_they_are_decimals():
    assert excel_format(None, "de-DE", column_type="string") is None
    assert excel_format(None, "de-DE", column_type="integer") is None
    assert excel_format(None, "de-DE", column_type="decimal") == "#,##0.00"


def test_excel_codes_reject_a_bad_format_string():
    with pytest.raises(ValueError, match="'curency'"):
        excel_format("curency", "en-US")
