"""Saved-query filters in the reader's words, and the catalogs that translate them."""

import pytest
from babel.messages.pofile import read_po

from shared import filter_words
from shared.filter_words import describe_filters
from shared.i18n import LOCALE_DIR, SUPPORTED_LANGUAGES, gettext, language, ngettext, translations
from shared.query.compiler import OPERATORS
from shared.query.relative_dates import RELATIVE_PERIODS

NB = "\u00a0"
FIELDS = {"revenue": "Revenue", "region": "Region"}


def words(spec: dict, locale: str = "en-US") -> str:
    (line,) = describe_filters([spec], entity_fields=FIELDS, locale=locale)
    return line


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "Order date: last 90 days"),
        ("de-DE", "Order date: letzte 90 Tage"),
        ("fr-FR", f"Order date{NB}: 90 derniers jours"),
        ("es-ES", "Order date: últimos 90 días"),
    ],
)
def test_a_relative_date_reads_in_four_languages(locale, expected):
    assert words({"field": "order_date", "op": "eq", "value": "last_90_days"}, locale) == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "Revenue: more than 1,000"),
        ("de-DE", "Revenue: mehr als 1.000"),
        ("fr-FR", f"Revenue{NB}: plus de 1\u202f000"),
        ("es-ES", "Revenue: más de 1.000"),
    ],
)
def test_a_number_is_written_the_locales_way(locale, expected):
    assert words({"field": "revenue", "op": "gt", "value": 1000}, locale) == expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "EMEA", "Region: EMEA"),
        ("ne", "APAC", "Region: not APAC"),
        ("in", ["EMEA", "APAC"], "Region: EMEA, APAC"),
        ("not_in", ["EMEA", "APAC"], "Region: not EMEA, APAC"),
        ("gt", 1000, "Region: more than 1,000"),
        ("gte", 1000, "Region: 1,000 or more"),
        ("lt", 2.5, "Region: less than 2.5"),
        ("lte", 1000, "Region: 1,000 or less"),
        ("between", [1000, 2500.75], "Region: 1,000 to 2,500.75"),
        ("contains", "EM", "Region: contains “EM”"),
        ("starts_with", "E", "Region: starts with “E”"),
        ("is_null", None, "Region: empty"),
        ("is_not_null", None, "Region: not empty"),
    ],
)
def test_every_operator_reads_as_words(op, value, expected):
    assert words({"field": "region", "op": op, "value": value}) == expected


def test_the_cases_above_cover_every_operator_the_compiler_knows():
    covered = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "starts_with"}
    assert set(OPERATORS) == covered | {"is_null", "is_not_null"}


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "Order date: previous month or later"),
        ("de-DE", "Order date: Vormonat oder später"),
        ("fr-FR", f"Order date{NB}: mois précédent ou après"),
        ("es-ES", "Order date: mes anterior o después"),
    ],
)
def test_comparisons_with_a_period_use_time_words(locale, expected):
    assert words({"field": "order_date", "op": "gte", "value": "previous_month"}, locale) == expected


def test_comparisons_with_a_date_use_time_words_and_the_locales_date():
    assert words({"field": "order_date", "op": "lt", "value": "2026-01-15"}) == "Order date: earlier than Jan 15, 2026"
    assert (
        words({"field": "order_date", "op": "lt", "value": "2026-01-15"}, "de-DE")
        == "Order date: früher als 15.01.2026"
    )


def test_comparisons_with_text_keep_the_symbol():
    assert words({"field": "region", "op": "gte", "value": "M"}, "de-DE") == "Region: ≥ M"


def test_a_date_time_with_an_offset_keeps_its_offset():
    line = words({"field": "created_at", "op": "gte", "value": "2026-01-15T09:30:00+02:00"}, "de-DE")
    assert line == "Created at: 15.01.2026, 09:30:00 UTC+02:00 oder später"


def test_between_two_periods_names_both():
    spec = {"field": "order_date", "op": "between", "value": ["previous_quarter", "this_month"]}
    assert words(spec, "de-DE") == "Order date: Vorquartal bis dieser Monat"
    assert words(spec, "es-ES") == "Order date: de trimestre anterior a este mes"


def test_true_and_false_are_translated():
    assert words({"field": "active", "op": "eq", "value": True}, "fr-FR") == f"Active{NB}: Oui"


def test_text_filters_keep_the_text_as_typed():
    assert words({"field": "sku", "op": "contains", "value": "2026-01-15"}, "de-DE") == "Sku: enthält „2026-01-15“"


def test_a_long_list_names_the_first_ten_and_counts_the_rest():
    spec = {"field": "region", "op": "in", "value": [f"R{i}" for i in range(25)]}
    assert words(spec) == "Region: R0, R1, R2, R3, R4, R5, R6, R7, R8, R9 and 15 more"
    assert words(spec, "de-DE").endswith("R9 und 15 weitere")
    spec["value"] = spec["value"][:11]
    assert words(spec, "fr-FR").endswith("R9 et 1 autre")


def test_one_day_reads_in_the_singular():
    assert words({"field": "order_date", "op": "eq", "value": "last_1_days"}, "de-DE") == "Order date: letzter Tag"
    assert words({"field": "order_date", "op": "eq", "value": "last_1_days"}) == "Order date: last 1 day"


def test_the_catalog_label_wins_and_unlabelled_fields_are_humanised():
    assert words({"field": "revenue", "op": "is_null"}) == "Revenue: empty"
    assert words({"field": "ship_country_code", "op": "is_null"}) == "Ship country code: empty"
    assert describe_filters([{"field": "x_y", "op": "is_null"}], entity_fields=None, locale="en") == ("X y: empty",)


def test_entries_that_are_not_filters_are_left_out():
    assert describe_filters(["region = EMEA", {"field": "region", "op": "is_null"}], entity_fields={}, locale="en") == (
        "Region: empty",
    )
    assert describe_filters([], entity_fields=None, locale="de-DE") == ()


# --- the catalogs ---------------------------------------------------------------------------


def _catalog(lang: str):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "reports.po").open("rb") as po:
        return read_po(po, locale=lang)


def _template_ids() -> set:
    with (LOCALE_DIR / "reports.pot").open("rb") as pot:
        return {m.id for m in read_po(pot) if m.id}


@pytest.mark.parametrize("lang", [x for x in SUPPORTED_LANGUAGES if x != "en"])
def test_each_catalog_translates_every_message_of_the_template(lang):
    catalog = _catalog(lang)
    assert {m.id for m in catalog if m.id} == _template_ids()
    untranslated = [m.id for m in catalog if m.id and (not m.string or not all(m.string) or m.fuzzy)]
    assert untranslated == []


@pytest.mark.parametrize("lang", [x for x in SUPPORTED_LANGUAGES if x != "en"])
def test_each_translation_keeps_the_placeholders_it_may_use(lang):
    problems = [(m.id, [str(e) for e in errors]) for m, errors in _catalog(lang).check()]
    assert problems == []


def test_every_word_the_filter_lines_use_is_in_the_template():
    used = {
        *filter_words.PERIODS.values(),
        *(phrase for phrases in filter_words.COMPARISONS.values() for phrase in phrases[:2]),
        *filter_words.PHRASES.values(),
        "%(field)s: %(value)s",
        "Yes",
        "No",
        ("last %(count)s day", "last %(count)s days"),
        ("%(values)s and %(count)s more", "%(values)s and %(count)s more"),
    }
    assert used - _template_ids() == set()
    fixed = [p for p in RELATIVE_PERIODS if "<n>" not in p and not p.startswith("last_")]
    assert set(fixed) == set(filter_words.PERIODS)


def test_unknown_languages_and_domains_fall_back_to_english():
    assert gettext("ja-JP", "Yes") == "Yes"
    assert gettext("de-DE", "Yes", domain="no-such-domain") == "Yes"
    assert translations("pt-BR").gettext("empty") == "empty"


def test_messages_are_found_by_language_and_filled_with_parameters():
    assert language("de-AT") == "de" and language("FR_ca") == "fr"
    assert gettext("de-AT", "Filters: %(filters)s", filters="Region: leer") == "Filter: Region: leer"
    assert gettext("en-US", "Filters: %(filters)s", filters="x") == "Filters: x"
    assert ngettext("es-ES", "last %(count)s day", "last %(count)s days", 7) == "últimos 7 días"
