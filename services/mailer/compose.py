"""Build one MIME message per recipient from the report's sandboxed templates.

Who sees whom: every recipient gets a copy of their own, so no address is ever
disclosed to anyone else. A `to` recipient's copy says `To: <them>`; a `cc`
recipient's copy says `To: undisclosed-recipients:;` and `Cc: <them>`, so they
can tell at a glance that they were copied rather than addressed.

Templates (subject and body) run in a bounded Jinja2 immutable sandbox
(shared.templates: strict undefined variables, time, size and iteration limits);
a template that reaches for internals or goes over a limit fails the run with a
clear message instead of running. A subject is always one line: CR, LF and other
control characters collapse to spaces, and bidi controls are dropped (as from
attachment names), so "invoice\u202efdp.exe" cannot pose as a PDF.

The user's body is untrusted HTML sent from the organisation's address: it goes
through nh3 (Ammonia) with an explicit allow-list - paragraphs, emphasis, lists,
headings, tables, and links to http(s)/mailto only, with rel="noopener noreferrer";
no script, style, form, iframe, images (remote images are tracking pixels) or
event-handler attributes. The system's own layout (report_mail.py for report runs)
is added around the cleaned body, outside the sanitiser. The plain-text part of an
HTML body is the text of the cleaned HTML, not its tags.

A message is multipart/mixed (multipart/related (multipart/alternative (text/plain,
text/html), inline images by Content-ID), attachments), each layer only when it has
something to hold. Everything but the text and HTML is serialised once per run; a copy
that carries its recipient's own unsubscribe link (RFC 8058) re-encodes only those two.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.headerregistry import Address, Group
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP, default
from email.utils import format_datetime
from html.parser import HTMLParser

import nh3
from jinja2 import Environment, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from shared import unsubscribe
from shared.config import Settings
from shared.templates import render_template
from shared.text import strip_bidi_controls

# Our own layout, not user input: a plain (autoescaping) environment is enough.
_LAYOUT_ENV = Environment(autoescape=select_autoescape(default=True), undefined=StrictUndefined)

DEFAULT_SUBJECT = "{{ report_name }} – {{ date }}"
DEFAULT_BODY = "{{ report_name }} for {{ date }} ({{ run_time }}): {{ row_count }} rows."
MAX_SUBJECT_CHARS = 250
PREVIEW_ROWS = 20
PREVIEW_CELL_CHARS = 120

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A copy's own headers are never folded: folding would turn List-Unsubscribe's long URL into an encoded
# word that no mail client reads as a link (RFC 5322 allows 998 characters a line).
_OWN_HEADERS = SMTP.clone(max_line_length=998)
# Stands for the recipient's unsubscribe link in a shared body; escaping and CSS inlining leave it as it is.
UNSUBSCRIBE_URL = "https://unsubscribe.biapp.invalid/recipient"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class DownloadLink:
    """A file too large to attach even zipped: a signed URL valid until `expires_at`."""

    filename: str
    url: str
    size: int
    expires_at: datetime


@dataclass(frozen=True)
class Preview:
    """The first rows of the report, read back from a rendered file."""

    columns: list[str]
    rows: list[list[str]]
    total_rows: int

    @property
    def shown(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML shows as `cid:<cid>` (a chart, the logo)."""

    cid: str
    data: bytes
    subtype: str = "png"


@dataclass(frozen=True)
class Unsubscribe:
    """Each copy of a report gets its own one-click unsubscribe link (RFC 8058), signed for its address."""

    settings: Settings = field(repr=False)
    report_id: uuid.UUID

    def url(self, address: str) -> str:
        return unsubscribe.url_for(self.settings, unsubscribe.token_for(self.settings, self.report_id, address))

    def headers(self, address: str) -> dict[str, str]:
        return unsubscribe.headers_for(self.settings, self.report_id, address)


@dataclass(frozen=True)
class MailContent:
    subject: str
    text: str
    html: str | None
    attachments: tuple[Attachment, ...] = ()
    links: tuple[DownloadLink, ...] = field(default=())
    images: tuple[InlineImage, ...] = ()
    unsubscribe: Unsubscribe | None = None  # text and html then hold UNSUBSCRIBE_URL, replaced per copy


def one_line(text: str, limit: int) -> str:
    """Collapse CR/LF, tabs and any other control character: a header value is one line."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def subject_line(text: str) -> str:
    """A rendered subject as sent: one line, no bidi controls, at most MAX_SUBJECT_CHARS."""
    return one_line(strip_bidi_controls(text), MAX_SUBJECT_CHARS)


def render_subject(source: str | None, context: dict, *, test: bool) -> str:
    subject = subject_line(render_template(source or DEFAULT_SUBJECT, context, field="subject", limit=4000))
    subject = subject or subject_line(render_template(DEFAULT_SUBJECT, context, field="subject"))
    return f"[TEST] {subject}" if test else subject


def safe_filename(name: str) -> str:
    """A file name without paths, quotes, control or bidi characters; other non-ASCII is kept (RFC 2231)."""
    base = unicodedata.normalize("NFC", strip_bidi_controls(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = _CONTROL.sub("", base).replace('"', "").strip(" .")
    return base[:200] or "attachment"


# --- the user's body: sanitised HTML and its plain text --------------------------------------

_BODY_TAGS = frozenset(
    {
        "p", "br", "hr", "div", "span", "blockquote", "pre", "code",
        "strong", "b", "em", "i", "u", "s", "small", "sub", "sup", "mark",
        "h1", "h2", "h3", "h4", "h5", "h6",
        "ul", "ol", "li",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
        "a",
    }
)  # fmt: skip
_BODY_ATTRIBUTES = {
    "a": {"href", "title"},
    "th": {"colspan", "rowspan", "scope"},
    "td": {"colspan", "rowspan"},
    "ol": {"start"},
}
# Removed together with their content (anything else not allowed is unwrapped: its text stays).
_BODY_DROPPED = frozenset(
    {
        "script",
        "style",
        "title",
        "textarea",
        "select",
        "option",
        "iframe",
        "noscript",
        "object",
        "template",
        "svg",
        "math",
    }
)
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_ABSOLUTE_URL = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)


def _only_absolute_links(tag: str, attribute: str, value: str) -> str | None:
    # Relative links mean nothing in an email (and would resolve against whatever the client likes).
    if attribute == "href" and not _ABSOLUTE_URL.match(value.strip()):
        return None
    return value


def sanitise_body_html(html: str) -> str:
    """The user's body HTML reduced to the allow-list above (nh3/Ammonia does the parsing)."""
    return nh3.clean(
        html,
        tags=set(_BODY_TAGS),
        clean_content_tags=set(_BODY_DROPPED),
        attributes={tag: set(names) for tag, names in _BODY_ATTRIBUTES.items()},
        attribute_filter=_only_absolute_links,
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


_BLOCKS = frozenset({"p", "div", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"})
_MARKUP = re.compile(r"<[a-zA-Z!/?]")


class _TextExtractor(HTMLParser):
    """Readable text from sanitised HTML: paragraphs and headings as blocks, `- ` and `1. ` list
    items (indented when nested), ` | ` between table cells, and a link's address after its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.lists: list[list] = []  # [tag, next number] per open list
        self.href: str | None = None
        self.link_text: list[str] = []
        self.pre = 0
        self.cells = 0

    def _line_start(self) -> bool:
        for piece in reversed(self.out):
            if piece:
                return piece.endswith("\n")
        return True

    def _write(self, text: str) -> None:
        if self.href is not None:
            self.link_text.append(text)
            return
        if not self.pre and self._line_start():
            text = text.lstrip(" ")
        self.out.append(text)

    def _break(self, blank: bool) -> None:
        """End the current line (and leave a blank one when `blank`); breaks never pile up."""
        tail = "".join(self.out[-3:])
        have = len(tail) - len(tail.rstrip("\n"))
        want = 2 if blank else 1
        if any(self.out) and have < want:
            self.out.append("\n" * (want - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._break(blank=True)
        if tag == "pre":
            self.pre += 1
        elif tag == "br":
            self.out.append("\n")  # explicit: may repeat
        elif tag in ("ul", "ol"):
            self._break(blank=not self.lists)
            self.lists.append([tag, 1])
        elif tag == "li":
            self._break(blank=False)
            kind = self.lists[-1] if self.lists else ["ul", 1]
            indent = "  " * max(0, len(self.lists) - 1)
            if kind[0] == "ol":
                self.out.append(f"{indent}{kind[1]}. ")
                kind[1] += 1
            else:
                self.out.append(f"{indent}- ")
        elif tag == "tr":
            self._break(blank=False)
            self.cells = 0
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append(" | ")
            self.cells += 1
        elif tag == "a":
            self.href = dict(attrs).get("href") or ""
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.href is not None:
            text = " ".join("".join(self.link_text).split())
            href, self.href = self.href, None
            same = href.removeprefix("mailto:") == text or href == text
            self._write(f"{text} ({href})" if href and text and not same else text or href)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._break(blank=not self.lists)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCKS:
            self._break(blank=True)

    def handle_data(self, data: str) -> None:
        self._write(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def html_to_text(html: str) -> str:
    """The text of (sanitised) HTML as a person would read it in a plain-text mail."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


def _cell(value: str) -> str:
    value = one_line(value, PREVIEW_CELL_CHARS + 1)
    return value if len(value) <= PREVIEW_CELL_CHARS else value[: PREVIEW_CELL_CHARS - 1] + "…"


def text_table(preview: Preview) -> str:
    """A fixed-width plain-text table for the text/plain part."""
    rows = [[_cell(c) for c in preview.columns]] + [[_cell(v) for v in row] for row in preview.rows]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(preview.columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


_HTML_LAYOUT = _LAYOUT_ENV.from_string(
    """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222;">
<div>{{ body }}</div>
{% if preview and preview.rows %}
<p style="margin-top: 16px; color: #555;">First {{ preview.shown }} of {{ preview.total_rows }} rows:</p>
<table style="border-collapse: collapse; font-size: 13px;">
<thead><tr>{% for column in preview.columns %}<th style="border: 1px solid #ccc; padding: 4px 8px;
 background: #f2f2f2; text-align: left;">{{ cell(column) }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in preview.rows %}<tr>{% for value in row %}<td style="border: 1px solid #ddd;
 padding: 4px 8px;">{{ cell(value) }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
{% endif %}
{% if attachments %}<p style="color: #555;">Attached: {{ attachments | join(", ") }}.</p>{% endif %}
{% if links %}<p><strong>Too large to attach</strong> — download without logging in until the link expires:</p>
<ul>{% for link in links %}<li><a href="{{ link.url }}">{{ link.filename }}</a> ({{ size(link.size) }}),
 expires {{ link.expires_at.strftime("%Y-%m-%d %H:%M UTC") }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""
)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


@dataclass(frozen=True)
class UserBody:
    """The user's body template rendered: its plain text, and its HTML cleaned by the sanitiser."""

    text: str
    html: Markup


def render_user_body(source: str | None, context: dict) -> UserBody:
    """The body template in the sandbox; an empty one says nothing (the layout around it speaks)."""
    if not (source or "").strip():
        return UserBody("", Markup(""))
    # Rendered with autoescape on: every variable is escaped, so markup here is the user's own.
    html = render_template(source, context, html=True, field="body")
    if _MARKUP.search(html):
        html = sanitise_body_html(html)
        text = html_to_text(html)
    else:
        # A plain-text template: its text as written, its line breaks kept in the HTML part too.
        text = render_template(source, context, field="body")
        html = sanitise_body_html(html.replace("\n", "<br>\n"))
    # Sanitised above: only allow-listed markup, variables escaped.
    return UserBody(text.strip(), Markup(html))  # noqa: S704


def compose_body(
    source: str | None,
    context: dict,
    *,
    subject: str,
    preview: Preview | None,
    attachments: tuple[Attachment, ...],
    links: tuple[DownloadLink, ...],
) -> tuple[str, str]:
    """(plain text, HTML) from a body template plus a preview and a note on the files, in a plain layout
    (alert emails; a report run's email is report_mail.compose_report)."""
    user = render_user_body(source or DEFAULT_BODY, context)
    text_intro = user.text
    names = [a.filename for a in attachments]
    html = _HTML_LAYOUT.render(
        subject=subject,
        body=user.html,
        preview=preview,
        cell=_cell,
        attachments=names,
        links=links,
        size=human_size,
    )
    text = [text_intro.strip()]
    if preview and preview.rows:
        text.append(f"First {preview.shown} of {preview.total_rows} rows:\n\n{text_table(preview)}")
    if names:
        text.append("Attached: " + ", ".join(names) + ".")
    if links:
        lines = ["Too large to attach - download without logging in until the link expires:"]
        lines += [
            f"- {link.filename} ({human_size(link.size)}), expires {link.expires_at:%Y-%m-%d %H:%M} UTC:\n  {link.url}"
            for link in links
        ]
        text.append("\n".join(lines))
    return "\n\n".join(text) + "\n", html


def _alternative(text: str, html: str | None, boundary: str) -> MIMEPart:
    """text/plain, or multipart/alternative (text/plain, text/html) under a boundary fixed by the caller."""
    part = MIMEPart(policy=SMTP)
    part.set_content(text, cte="quoted-printable")
    if html:
        part.make_alternative(boundary=boundary)
        part.add_alternative(html, subtype="html", cte="quoted-printable")
    return part


def _part_body(part: MIMEPart) -> bytes:
    return part.as_bytes(policy=SMTP).partition(b"\r\n\r\n")[2]


def _adopt(message: EmailMessage, part: MIMEPart) -> None:
    """Make `part`'s content (its Content-* headers and payload) the message's own."""
    for name, value in part.items():
        message[name] = value
    message.set_payload(part.get_payload())


def _base_message(
    content: MailContent, *, sender: str, sender_name: str | None, reply_to: str | None, boundary: str
) -> EmailMessage:
    """Everything every copy shares: subject, sender, body, images and files (no recipient, date or id)."""
    message = EmailMessage(policy=SMTP)
    message["Subject"] = content.subject
    message["From"] = Address(display_name=one_line(strip_bidi_controls(sender_name or ""), 200), addr_spec=sender)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["MIME-Version"] = "1.0"
    body = _alternative(content.text, content.html, boundary)
    if content.images:
        related = MIMEPart(policy=SMTP)
        related.make_related()
        related.set_param("type", body.get_content_type())  # RFC 2387: the type of its root part
        related.attach(body)
        for image in content.images:
            related.add_related(image.data, "image", image.subtype, cid=f"<{image.cid}>", disposition="inline")
        body = related
    if not content.attachments:
        _adopt(message, body)
        return message
    message.make_mixed()
    message.attach(body)
    for attachment in content.attachments:
        mime, _, raw_params = attachment.content_type.partition(";")
        maintype, _, subtype = mime.strip().lower().partition("/")
        params = {}
        for param in raw_params.split(";"):
            key, sep, value = param.strip().partition("=")
            if sep and key:
                params[key.strip().lower()] = value.strip().strip('"')
        message.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=safe_filename(attachment.filename),
            params=params or None,
        )
    return message


class PreparedMail:
    """The shared part of a message serialised once; each copy only adds its own few headers.

    Encoding a multi-megabyte attachment per recipient would dominate a large
    send, so the body bytes are built once and reused for every copy. When each copy
    carries its own unsubscribe link, only the text and HTML parts are encoded again:
    they sit between the shared bytes before and after them, under a boundary kept fixed.
    """

    def __init__(self, content: MailContent, *, sender: str, sender_name: str | None, reply_to: str | None):
        self._content = content
        self._boundary = f"=_biapp_{secrets.token_hex(12)}"
        message = _base_message(
            content, sender=sender, sender_name=sender_name, reply_to=reply_to, boundary=self._boundary
        )
        self._head, _, self._body = message.as_bytes().partition(b"\r\n\r\n")
        self._around: tuple[bytes, bytes] | None = None
        if content.unsubscribe is not None:
            shared = _part_body(_alternative(content.text, content.html, self._boundary))
            before, found, after = self._body.partition(shared)
            if not found:  # serialisation is deterministic; this would be a bug, never a recipient's problem
                raise RuntimeError("the text and HTML parts were not found in the prepared message")
            self._around = (before, after)

    def for_recipient(self, recipient: str, *, kind: str = "to", now: datetime, message_id: str) -> bytes:
        """The full RFC 5322 bytes of one copy; its headers (and unsubscribe link) name `recipient` only."""
        headers = EmailMessage(policy=_OWN_HEADERS)
        if kind == "cc":
            headers["To"] = Group("undisclosed-recipients")
            headers["Cc"] = recipient
        else:
            headers["To"] = recipient
        headers["Date"] = format_datetime(now)
        headers["Message-ID"] = message_id
        body = self._body
        if self._around is not None and self._content.unsubscribe is not None:
            for name, value in self._content.unsubscribe.headers(recipient).items():
                headers[name] = value
            body = self._own_body(self._content.unsubscribe.url(recipient))
        own = headers.as_bytes().partition(b"\r\n\r\n")[0]
        return own + b"\r\n" + self._head + b"\r\n\r\n" + body

    def _own_body(self, url: str) -> bytes:
        content = self._content
        text = content.text.replace(UNSUBSCRIBE_URL, url)
        html = content.html.replace(UNSUBSCRIBE_URL, str(escape(url))) if content.html else None
        before, after = self._around
        return before + _part_body(_alternative(text, html, self._boundary)) + after


def build_message(
    content: MailContent,
    *,
    sender: str,
    sender_name: str | None,
    recipient: str,
    kind: str = "to",
    reply_to: str | None,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """One copy as an EmailMessage (what a mail client would parse)."""
    raw = PreparedMail(content, sender=sender, sender_name=sender_name, reply_to=reply_to).for_recipient(
        recipient, kind=kind, now=now, message_id=message_id
    )
    return message_from_bytes(raw, policy=default)


def message_id_for(delivery_id: object, sender: str) -> str:
    """Stable per (execution, recipient): a copy sent again after a crash carries the same Message-ID,
    so mail clients that de-duplicate by it show one message."""
    domain = sender.rsplit("@", 1)[-1] or "biapp.invalid"
    return f"<biapp.{delivery_id}@{domain}>"
