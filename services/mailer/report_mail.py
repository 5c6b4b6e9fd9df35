"""The report email: a run's Notification as an HTML part, a plain-text part and inline images.

Layout (templates/report_email.html and .txt): the organisation's header, the report's title and
the time it ran for, the user's own body as they wrote it (already sanitised, compose.py), then each
section - a dashboard widget, or the report's one query - with its charts, its first rows (numbers
right-aligned), its true row count, a line when the query was cut at the row limit and its filters;
then "Open report", the files' signed links, and a footer naming who scheduled the report with a
placeholder for the recipient's own unsubscribe link (PreparedMail fills it in for each copy).

Every value is escaped (Jinja autoescape): titles, cells, filters and names are data, never markup.
css-inline moves the stylesheet into style attributes, since Gmail and Outlook ignore much of
<style>; only the @media rules for phones stay there. Charts are rendered to PNG here, once per run,
and referenced by cid: (the message carries them in multipart/related); a chart that cannot be
rendered is left out and its table still tells. The boilerplate is in the report's language
(gettext domain `email`, shared/i18n.py), and so are numbers, sizes and times.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import css_inline
from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel.numbers import format_decimal
from babel.units import format_unit
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from services.mailer.branding import Branding, image_size
from services.mailer.compose import PREVIEW_CELL_CHARS, UNSUBSCRIBE_URL, InlineImage, UserBody, one_line
from services.mailer.notification import REPORT_TEST, FileLink, Notification, Section
from shared import charts, i18n
from shared.formats import zone_abbreviation

log = logging.getLogger(__name__)

DOMAIN = "email"  # gettext catalogs: shared/locale/<lang>/LC_MESSAGES/email.po
WIDTH = 640  # the centred column; narrower screens get their full width
CONTENT_WIDTH = WIDTH - 2 * 28  # inside the card's padding
CHART_SCALE = 2.0  # PNGs at twice their shown size: sharp on high-density screens

_ENV = Environment(
    loader=PackageLoader("services.mailer", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True)
# Older runs recorded no alignment: a cell that reads as a number, amount or percentage is right-aligned.
_NUMBER = re.compile(r"[-+\u2212(]?[$€£¥]?\s?\d[\d.,'\s\u00a0\u202f]*\s?(?:%|[$€£¥]|[A-Z]{3})?\)?")


@dataclass(frozen=True)
class EmailFile:
    """One of the run's files as the email offers it: its signed link, and whether it is also attached."""

    link: FileLink
    attached: bool


@dataclass(frozen=True)
class ReportEmail:
    text: str
    html: str
    images: tuple[InlineImage, ...]  # charts (and the logo), referenced from the HTML by cid:


@lru_cache(maxsize=64)
def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError, AttributeError):
        return Locale.parse("en_US")


class Words:
    """The boilerplate, numbers, sizes and times of one email, in its report's language."""

    def __init__(self, locale: str):
        self.locale = locale
        self.babel = _babel_locale(locale)

    def gettext(self, message: str, **params) -> str:
        return i18n.gettext(self.locale, message, domain=DOMAIN, **params)

    def ngettext(self, singular: str, plural: str, n: int, **params) -> str:
        return i18n.ngettext(self.locale, singular, plural, n, domain=DOMAIN, **{"count": self.number(n), **params})

    def number(self, value: int) -> str:
        return format_decimal(value, locale=self.babel)

    def size(self, size: int) -> str:
        for unit, scale in (("digital-megabyte", 1_000_000), ("digital-kilobyte", 1000)):
            if size >= scale:
                return format_unit(size / scale, unit, "short", format="#,##0.#", locale=self.babel)
        return format_unit(size, "digital-byte", "short", locale=self.babel)

    def moment(self, value: datetime, zone: str) -> str:
        """CLDR's long date and short time in `zone`, then the zone's abbreviation: '2. März 2026, 08:00 CET'."""
        local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(ZoneInfo(zone or "UTC"))
        date = babel_dates.format_date(local, "long", locale=self.babel)
        time = babel_dates.format_time(local, "short", tzinfo=local.tzinfo, locale=self.babel)
        joined = str(self.babel.datetime_formats["medium"]).replace("{1}", date).replace("{0}", time)
        return f"{joined} {zone_abbreviation(local)}"


@dataclass(frozen=True)
class _Cell:
    text: str
    right: bool = False


@dataclass(frozen=True)
class _Picture:
    cid: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class _SectionView:
    title: str
    pictures: tuple[_Picture, ...]
    header: tuple[_Cell, ...]
    rows: tuple[tuple[_Cell, ...], ...]
    table: str  # the rows as aligned text, for the plain-text part
    count: str
    cut: str | None
    filters: tuple[str, ...]


@dataclass(frozen=True)
class _FileView:
    name: str
    url: str
    details: str


def compose_report(
    notification: Notification,
    body: UserBody,
    *,
    subject: str,
    files: tuple[EmailFile, ...] = (),
    branding: Branding = Branding(),  # frozen: one shared default is safe
    unsubscribe: bool = False,
    cid_domain: str = "biapp.invalid",
    render: Callable[..., bytes] = charts.to_png,
) -> ReportEmail:
    """The email of one run. `unsubscribe` puts UNSUBSCRIBE_URL in the footer, for PreparedMail to replace."""
    words = Words(notification.locale)
    run = notification.run_id.replace("-", "")  # Content-IDs unique to the run, short enough for one header line
    images: list[InlineImage] = []
    logo = None
    if branding.logo is not None:
        logo = _Picture(f"logo.{run}@{cid_domain}", branding.logo.width, branding.logo.height, branding.name or "")
        images.append(InlineImage(logo.cid, branding.logo.data, branding.logo.subtype))
    sections = _section_views(
        notification, words, images, cid=lambda n, i: f"c{n}-{i}.{run}@{cid_domain}", render=render
    )
    when, expiry = notification.when, min((f.link.expires_at for f in files), default=None)
    as_of = words.gettext("As of %(when)s", when=words.moment(when, notification.timezone)) if when else ""
    test = notification.type == REPORT_TEST
    context = {
        "lang": notification.locale.replace("_", "-"),
        "subject": subject,
        "width": WIDTH,
        "brand": branding,
        "logo": logo,
        "preheader": as_of,
        "eyebrow": words.gettext("Test run") if test else words.gettext("Scheduled report"),
        "title": one_line(notification.name, 500),
        "as_of": as_of,
        "description": (notification.description or "").strip(),
        "sections": sections,
        "open_url": notification.open_url,
        "files": [_file_view(f, words) for f in files],
        "expiry": _expiry(expiry, notification.timezone, words) if expiry else "",
        "owner": notification.owner,
        "unsubscribe_url": UNSUBSCRIBE_URL if unsubscribe else None,
        "_": words.gettext,
        "ngettext": words.ngettext,
    }
    html = _INLINER.inline(_ENV.get_template("report_email.html").render(context, body=body.html))
    text = _tidy(_ENV.get_template("report_email.txt").render(context, body=body.text))
    return ReportEmail(text, html, tuple(images))


def _section_views(
    notification: Notification, words: Words, images: list[InlineImage], *, cid: Callable, render: Callable
) -> list[_SectionView]:
    """Each section as the templates show it; its charts rendered and added to `images`."""
    views = []
    alone = len(notification.sections) == 1
    for number, section in enumerate(notification.sections, start=1):
        pictures = []
        for index, spec in enumerate(section.charts, start=1):
            drawn = _chart(spec, cid(number, index), section.chart_alt or section.title, render)
            if drawn is not None:
                images.append(drawn[0])
                pictures.append(drawn[1])
        # An older run's one section is titled after the report: the heading above already says it.
        title = "" if alone and section.title == notification.name else section.title
        views.append(_section_view(section, title, tuple(pictures), words))
    return views


def _expiry(moment: datetime, zone: str, words: Words) -> str:
    return words.gettext("Links work without signing in until %(when)s.", when=words.moment(moment, zone))


def _chart(spec: dict, cid: str, alt: str, render: Callable[..., bytes]) -> tuple[InlineImage, _Picture] | None:
    try:
        png = render(spec, scale=CHART_SCALE)
    except Exception:
        log.warning("a chart could not be rendered for the email; its table still shows the rows", exc_info=True)
        return None
    size = image_size(png)
    if not size or not all(size):
        return None
    width, height = size[0] / CHART_SCALE, size[1] / CHART_SCALE
    shown = min(width, CONTENT_WIDTH)
    return InlineImage(cid, png, "png"), _Picture(cid, round(shown), round(height * shown / width), alt)


def _text(value: object) -> str:
    text = one_line("" if value is None else str(value), PREVIEW_CELL_CHARS + 1)
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"


def _right_aligned(section: Section) -> list[bool]:
    width = len(section.columns)
    if section.align:
        return [a == "right" for a in section.align[:width]] + [False] * (width - len(section.align))
    columns = [[_text(row[i]) for row in section.rows if i < len(row)] for i in range(width)]
    return [any(values) and all(_NUMBER.fullmatch(v) for v in values if v) for values in columns]


def _section_view(section: Section, title: str, pictures: tuple[_Picture, ...], words: Words) -> _SectionView:
    right = _right_aligned(section)
    header = tuple(_Cell(_text(c), r) for c, r in zip(section.columns, right, strict=True))
    rows = tuple(
        tuple(_Cell(_text(row[i]) if i < len(row) else "", right[i]) for i in range(len(header)))
        for row in section.rows
    )
    shown = len(rows)
    total = section.row_count if section.row_count is not None else shown
    if total == 0:
        count = words.gettext("No rows")
    elif 0 < shown < total:
        count = words.gettext("First %(shown)s of %(total)s rows", shown=words.number(shown), total=words.number(total))
    else:
        count = words.ngettext("%(count)s row", "%(count)s rows", total)
    cut = None
    if section.truncated:
        cut = words.gettext(
            "This section was cut at %(total)s rows, the report's row limit: the query found more.",
            total=words.number(total),
        )
    return _SectionView(
        title=_text(title),
        pictures=pictures,
        header=header if rows else (),
        rows=rows,
        table=text_table(header, rows) if rows else "",
        count=count,
        cut=cut,
        filters=tuple(_text(f) for f in section.filters if f),
    )


def text_table(header: tuple[_Cell, ...], rows: tuple[tuple[_Cell, ...], ...]) -> str:
    """A fixed-width table: columns separated by ` | `, numbers right-aligned."""
    table = (header, *rows)
    widths = [max(len(row[i].text) for row in table) for i in range(len(header))]

    def line(cells: tuple[_Cell, ...]) -> str:
        padded = (c.text.rjust(w) if c.right else c.text.ljust(w) for c, w in zip(cells, widths, strict=True))
        return " | ".join(padded).rstrip()

    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *(line(row) for row in rows)])


def _file_view(file: EmailFile, words: Words) -> _FileView:
    state = words.gettext("attached") if file.attached else words.gettext("too large to attach")
    details = ", ".join(part for part in ((file.link.format or "").upper(), words.size(file.link.size), state) if part)
    return _FileView(file.link.filename, file.link.url, details)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"
