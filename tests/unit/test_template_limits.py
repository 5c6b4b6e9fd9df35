"""User templates are bounded: small ranges, no huge '*'/'**' results, capped padding and filters, a time budget.

Every bomb must be refused quickly (well within 2 s) with a message that names the construct,
at save time (422 naming the field) and at render time (PermanentError).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.mailer.compose import compose_body, render_subject
from shared.db import transaction
from shared.errors import FieldError, PermanentError
from shared.models import SavedQuery, User
from shared.templates import check_template, render_template, template_context

BUDGET_S = 2.0

NESTED_RANGE_BOMB = "{% for i in range(100000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}x"
TRIPLE_RANGE_BOMB = (
    "{% for i in range(100000) %}{% for j in range(5000) %}{% for k in range(5000) %}"
    "{% endfor %}{% endfor %}{% endfor %}x"
)
TRIPLE_SMALL_RANGES = (
    "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
    "{% endfor %}{% endfor %}{% endfor %}x"
)


def _context():
    return template_context("Weekly revenue", datetime(2026, 3, 29, 9, 0, tzinfo=UTC), 1234, "UTC")


def _refused(template: str, *, field: str = "body", html: bool = False) -> str:
    """Render `template`; it must fail with PermanentError within the budget. Returns the message."""
    started = time.monotonic()
    with pytest.raises(PermanentError) as caught:
        render_template(template, _context(), field=field, html=html)
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET_S, f"took {elapsed:.2f} s to refuse {template!r}"
    assert f"{field} template" in caught.value.message
    return caught.value.message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Revenue {{date}}", "Revenue 2026-03-29"),
        ("{{ report_name|upper }}", "WEEKLY REVENUE"),
        ("{% if row_count > 0 %}{{ row_count }} rows{% endif %}", "1234 rows"),
        ("{% for i in range(3) %}{{i}}{% endfor %}", "012"),
        ("{{ '%06d'|format(row_count) }}", "001234"),
        ("{{ '{:>6}|{:.2f}'.format(row_count, 1.5) }}", "  1234|1.50"),
        ("{{ report_name|center(20) }}", "   Weekly revenue   "),
        ("{{ [report_name, date]|join(' / ') }}", "Weekly revenue / 2026-03-29"),
        ("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [0] * 2 }} {{ row_count * 2 }}", "1024 ababab [0, 0] 2468"),
        ("{{ 2**10**10 }}", str(2**100)),  # Jinja's '**' is left-associative: (2**10)**10
        ("{{ report_name ~ ' ' ~ timezone }}", "Weekly revenue UTC"),
        ("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "6"),
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(date) }}", "<2026-03-29>"),
        ("{% set s %}{{ report_name }}!{% endset %}{{ s }}", "Weekly revenue!"),
        ("{{ 'a\nb'|indent(2, true) }}", "  a\n  b"),
        ("{{ report_name|replace('Weekly', 'Monthly') }}", "Monthly revenue"),
        ("{{ report_name|truncate(9, true, '', 0) }}", "Weekly re"),
        ("{{ range(5)|batch(2)|list }}", "[[0, 1], [2, 3], [4]]"),
        ("{{ [[1], [2]]|sum(start=[]) }}", "[1, 2]"),
        ("{{ report_name.ljust(16, '.') }}|", "Weekly revenue..|"),
        ("{% for c in 'abc' recursive %}{{ c }}{% endfor %}", "abc"),
        ("{{ lipsum(1, false, 5, 6)|wordcount }}", "5"),
    ],
)
def test_ordinary_templates_still_render(template, expected):
    assert render_template(template, _context(), field="body") == expected


@pytest.mark.parametrize(
    ("template", "construct"),
    [
        (NESTED_RANGE_BOMB, "range() with more than 1000 items"),
        (TRIPLE_RANGE_BOMB, "range() with more than 1000 items"),
        (TRIPLE_SMALL_RANGES, "more than 10000 loop iterations"),
        ("{{ range(10**100)|length }}", "range()"),
        ("{{ ('a'*100000000)|length }}", "'*' to make 100000000 characters (limit 200000)"),
        ("{{ ([1]*10**8)|length }}", "'*' to make 100000000 items"),
        ("{{ 2**(10**10) }}", "'**'"),
        ("{{ 9**999999 }}", "'**' to make a number of about"),
        ("{{ (10**2000) * (10**2000) * (10**2000) }}", "'*'"),
        ("{{ 'x'.ljust(10**9) }}", "ljust()"),
        ("{{ 'x'.rjust(10**9) }}{{ 'x'.center(10**9) }}", "rjust()"),
        ("{{ 'x'.zfill(10**9) }}", "zfill()"),
        ("{{ 'x\t'.expandtabs(10**9) }}", "expandtabs()"),
        ("{{ (1).to_bytes(10**9, 'big') }}", "to_bytes()"),
        ("{{ ('a'*1000).replace('', 'b'*1000) }}", "replace()"),
        ("{{ ('a'*1000).translate({97: 'b'*1000}) }}", "translate()"),
        ("{{ ('x'*100000).join(range(1000)|map('string')) }}", "join()"),
        ("{{ '{:>1000000000}'.format(1) }}", "format()"),
        ("{{ '{:.1000000000f}'.format(1.5) }}", "format()"),
        ("{{ '{0:{1}}'.format('x', 10**9) }}", "format()"),
        ("{{ '%1000000000d' % 1 }}", "'%'"),
        ("{{ '%*d' % (10**9, 1) }}", "'%'"),
        ("{{ '%1000000000d'|format(1) }}", "|format"),
        ("{{ lipsum(10**6) }}", "lipsum()"),
        ("{{ lipsum(1, max=10**9) }}", "lipsum()"),
        ("{{ 'x'|center(10**9) }}", "|center"),
        ("{{ 'a\nb'|indent(10**9) }}", "|indent"),
        ("{{ ('a\n'*50000)|indent('x'*1000) }}", "|indent"),
        ("{{ ('a '*50000)|wordwrap(1, wrapstring='x'*1000) }}", "|wordwrap"),
        ("{{ ('a'*1000)|replace('', 'b'*1000) }}", "|replace"),
        ("{{ range(1000)|join('x'*100000) }}", "|join"),
        ("{{ ['x'*100000]|batch(10**9, 'y')|list }}", "|batch"),
        ("{{ [1]|slice(10**9)|list }}", "|slice"),
        ("{{ {'a': [1, [2]]}|tojson(10**9) }}", "|tojson"),
        ("{{ ('a.example.com '*10000)|urlize(target='x'*1000) }}", "|urlize"),
        ("{% set a = 'x'*100000 %}{{ [a, a, a]|length }}", "list"),
        ("{% set a = 'x'*100000 %}{{ a + a + a }}", "'+'"),
        ("{% set a = 'x'*100000 %}{% set b = a ~ a ~ a %}{{ b|length }}", "'~'"),
        ("{% set a = 'x'*100000 %}{% set b %}{{ a }}{{ a }}{{ a }}{% endset %}{{ b|length }}", "block"),
        (
            "{% set ns = namespace(s='x'*1000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s|length }}",
            "'~'",
        ),
        ("{% for i in range(1000) %}{% set x = 'y' * 150000 %}{% endfor %}", "work"),
        ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}", "1 s"),
        (
            "{% set a = 'x'*100000 %}{% macro f() %}{{ varargs|length }}{% endmacro %}{{ f(a, a, a, a) }}",
            "value of more than 200000",
        ),
        ("{% set a = 'x'*10 %}{% set b = [a] %}" + "{% set b = [b] %}" * 60 + "{{ b|length }}", "deep"),
    ],
)
def test_bombs_are_refused_quickly_naming_the_construct(template, construct):
    message = _refused(template)
    assert construct in message, message


@pytest.mark.parametrize(
    "template",
    [
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
        "{{ 1 / 0 }}",
        "{{ lipsum(1, min=5, max=1) }}",
        "{{ 'a'|float + [] }}",
        "{% include 'other.html' %}",
    ],
)
def test_templates_that_raise_become_a_clear_permanent_error(template):
    message = _refused(template)
    assert "Traceback" not in message


def test_a_recursive_loop_is_bounded_too():
    message = _refused("{% for x in range(1000) recursive %}{{ loop(range(1000)) }}{% endfor %}")
    assert "loop iterations" in message or "1 s" in message or "deep" in message


def test_the_html_environment_is_bounded_as_well():
    assert "'*'" in _refused("{{ ('<'*100000000)|length }}", html=True)
    assert "format()" in _refused("{{ ('<b>'|safe).format('x').ljust(10) }}{{ '{:>1000000000}'.format(1) }}", html=True)


def test_the_subject_at_render_time_is_refused_with_a_permanent_error():
    started = time.monotonic()
    with pytest.raises(PermanentError, match="subject template uses range"):
        render_subject(NESTED_RANGE_BOMB, _context(), test=False)
    with pytest.raises(PermanentError, match="body template"):
        compose_body("{{ 'x'.ljust(10**9) }}", _context(), subject="S", preview=None, attachments=(), links=())
    assert time.monotonic() - started < BUDGET_S


def test_check_template_names_the_field():
    with pytest.raises(FieldError) as caught:
        check_template(TRIPLE_RANGE_BOMB, "subject")
    assert "range()" in caught.value.errors["subject"][0]


def test_the_time_budget_stops_slow_but_small_work(monkeypatch):
    import shared.templates as templates

    monkeypatch.setattr(templates, "TIME_BUDGET_S", 0.05)
    started = time.monotonic()
    with pytest.raises(PermanentError, match="longer than"):
        render_template(
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
            _context(),
            field="body",
        )
    assert time.monotonic() - started < 1.0


# --- at save time, over the API ----------------------------------------------------------


@pytest.fixture
def analyst(api):
    return api.create_user("ana@example.com", "analyst")


@pytest.fixture
def query_id(api, analyst):
    with transaction(api.session_factory) as session:
        owner = session.execute(sa.select(User).where(User.email == "ana@example.com")).scalar_one()
        query = SavedQuery(name="Revenue", kind="sql", sql="select 1 as one", owner_id=owner.id)
        session.add(query)
        session.flush()
        return str(query.id)


def _report(query_id, **overrides):
    data = {
        "name": "Daily revenue",
        "saved_query_id": query_id,
        "schedule": {"frequency": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
        "recipients": ["a@example.com"],
        "formats": ["csv"],
        "subject": "Revenue {{date}}",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("field", "template", "fragment"),
    [
        ("subject", NESTED_RANGE_BOMB, "range() with more than 1000 items"),
        ("subject", TRIPLE_RANGE_BOMB, "range()"),
        ("subject", TRIPLE_SMALL_RANGES, "loop iterations"),
        ("body", "{{ ('a'*100000000)|length }}", "'*'"),
        ("body", "{{ 'x'|center(10**9) }}", "|center"),
        ("body", "{{ lipsum(10**6) }}", "lipsum()"),
    ],
)
def test_a_template_bomb_is_a_422_naming_the_field_within_the_budget(analyst, query_id, field, template, fragment):
    started = time.monotonic()
    response = analyst.post("/api/scheduled-reports", json=_report(query_id, **{field: template}))
    elapsed = time.monotonic() - started
    assert response.status_code == 422, response.get_json()
    message = response.get_json()["errors"][field][0]
    assert fragment in message and f"{field} template" in message
    assert elapsed < BUDGET_S, f"save took {elapsed:.2f} s"


def test_ordinary_templates_are_saved(analyst, query_id):
    response = analyst.post(
        "/api/scheduled-reports",
        json=_report(
            query_id,
            subject="{{ report_name|upper }} {% for i in range(3) %}{{i}}{% endfor %}",
            body="{% if row_count > 0 %}<p>{{ row_count }} rows</p>{% endif %}",
        ),
    )
    assert response.status_code == 201, response.get_json()
