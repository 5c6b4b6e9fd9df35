"""A `Notification` as a Slack Block Kit message: `{"text": fallback, "blocks": [...]}`, no network.

Built with slack-sdk's Block Kit models so Slack's per-block limits are checked as it is serialised.
Every piece of user data is escaped for mrkdwn (`&`, `<`, `>`), and text objects are `verbatim` so a
cell saying `@channel` or `#general` is never turned into a mention or a link. The message stays
within Slack's documented limits: 50 blocks, 3000 characters per section text, 10 fields of 2000,
header 150, 5 buttons here (Slack allows 25) with 75-character labels and 3000-character URLs.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    ImageBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.blocks.basic_components import SlackFile

from services.mailer.notification import Notification, Section

MAX_BLOCKS = 50
HEADER_MAX = 150
TEXT_MAX = 3000  # a section's text, and the fallback `text`
FIELD_MAX = 2000
FIELDS_PER_SECTION = 10
MAX_FACT_BLOCKS = 3  # at most 30 facts
MAX_IMAGES = 10
MAX_BUTTONS = 5
BUTTON_TEXT_MAX = 75
URL_MAX = 3000
CELL_MAX = 24  # display columns per table cell
TABLE_LINE_MAX = 400  # characters a table line may take: columns past it are left to the files
TITLE_MAX = 250  # a bold title or label, so its closing `*` survives
NOTE_RESERVE = 60  # room kept in a table block for its "… N more rows" line

_NUMBER = re.compile(r"^[+-]?(?=\.?\d)(\d[\d,]*)?(\.\d+)?(e[+-]?\d+)?%?$", re.IGNORECASE)


def slack_message(n: Notification, *, image_files: tuple[str, ...] = ()) -> dict[str, Any]:
    """The chat.postMessage / incoming-webhook body for `n`; `image_files` (ids of charts uploaded by a bot)
    become image blocks. Without them (an incoming webhook cannot upload), a line points to the charts in
    the PDF and the email."""
    head: list[Block] = [_header(n), _context(_run_line(n))]
    head.append(_section(_headline(n)))
    head.extend(_fact_blocks(n.facts))

    alt = next((section.chart_alt for section in n.sections if section.chart_alt), "") or "Chart"
    tail: list[Block] = [
        ImageBlock(slack_file=SlackFile(id=file_id), alt_text=_clip(alt, 2000))
        for file_id in image_files[:MAX_IMAGES]
        if file_id
    ]
    if not tail and any(section.charts for section in n.sections):
        tail.append(_context("_Charts are in the email and the PDF: use Download or Open report._"))
    actions = _actions(n)
    if actions is not None:
        tail.append(actions)
    tail.append(_context(f"BIApp Reports  ·  run `{_esc(n.run_id)}`"))

    body: list[Block] = []
    if n.sections:
        body.append(DividerBlock())
        room = MAX_BLOCKS - len(head) - len(tail) - len(body)
        per_section = [_section_blocks(section) for section in n.sections]
        if sum(len(blocks) for blocks in per_section) > room:
            room -= 1  # the "N more sections" line
        shown = 0
        for blocks in per_section:
            if len(blocks) > room:
                break
            body.extend(blocks)
            room -= len(blocks)
            shown += 1
        left = len(n.sections) - shown
        if left:
            body.append(_context(f"_{left:,} more {_plural(left, 'section')} in the files_"))

    blocks = head + body + tail
    return {"text": _fallback(n), "blocks": [block.to_dict() for block in blocks]}


# --- the pieces -------------------------------------------------------------------------------


def _header(n: Notification) -> HeaderBlock:
    title = " ".join(n.subject.split()) or " ".join(n.name.split()) or "BIApp report"
    return HeaderBlock(text=PlainTextObject(text=_clip(title, HEADER_MAX), emoji=True))


def _run_line(n: Notification) -> str:
    parts = []
    if n.type == "report.test":
        parts.append("Test run")
    when = n.local(n.when)
    if when:
        parts.append(f"Run {when}")
    if n.row_count is not None:
        parts.append(f"{n.row_count:,} {_plural(n.row_count, 'row')}")
    return "  ·  ".join(parts) if parts else _esc(n.name or n.object_kind)


def _headline(n: Notification) -> str:
    headline = _esc(n.headline or n.name or n.subject) or "—"
    if not n.failed:
        return headline
    text = f":warning: *{_fit(headline, TITLE_MAX * 4)}*"
    if n.error:
        text += f"\n*Error:* {_esc(n.error)}"
    return text


def _fact_blocks(facts: tuple[tuple[str, str], ...]) -> list[Block]:
    fields = [
        MarkdownTextObject(
            text=_fit(f"*{_fit(_esc(label or '—'), TITLE_MAX)}*\n{_esc(value)}", FIELD_MAX), verbatim=True
        )
        for label, value in facts[: FIELDS_PER_SECTION * MAX_FACT_BLOCKS]
    ]
    return [
        SectionBlock(fields=fields[start : start + FIELDS_PER_SECTION])
        for start in range(0, len(fields), FIELDS_PER_SECTION)
    ]


def _section_blocks(section: Section) -> list[Block]:
    """A section's title line and, when it has any, its first rows as an aligned monospace table."""
    table, shown = _table(section)
    title = f"*{_fit(_esc(section.title or 'Untitled'), TITLE_MAX)}*"
    phrase = _rows_phrase(section, shown)
    blocks: list[Block] = [_section(f"{title}  ·  {phrase}" if phrase else title)]
    if table:
        blocks.append(_section(table))
    return blocks


def _rows_phrase(section: Section, shown: int) -> str:
    total = section.row_count
    if total is None:
        return f"first {shown:,} {_plural(shown, 'row')}" if shown else ""
    if total == 0:
        return "no rows"
    if shown < total:
        return f"first {shown:,} of {total:,} rows"
    return f"{total:,} {_plural(total, 'row')}"


def _table(section: Section) -> tuple[str | None, int]:
    """The rows as a ``` block of at most TEXT_MAX characters, and how many rows it shows."""
    width = len(section.columns) or max((len(row) for row in section.rows), default=0)
    if not width or not section.rows:
        return None, 0
    header = [_cell(c) for c in section.columns] if section.columns else None
    rows = [[_cell(row[i]) if i < len(row) else "" for i in range(width)] for row in section.rows]
    widths = [max(_width(r[i]) for r in ([header] if header else []) + rows) for i in range(width)]
    numeric = [all(not r[i] or _NUMBER.match(r[i]) for r in rows) for i in range(width)]  # right-aligned

    # Keep the columns whose aligned lines fit (so several rows do); the rest are in the files.
    sample = ([header] if header else []) + rows[:5]
    keep = 1
    while keep < width and max(len(_esc(_line(r, widths, numeric, keep + 1))) for r in sample) <= TABLE_LINE_MAX:
        keep += 1

    lines = []
    if header:
        lines += [_esc(_line(header, widths, numeric, keep)), "  ".join("-" * w for w in widths[:keep])]
    used = len("```\n\n```") + sum(len(line) + 1 for line in lines)
    shown = 0
    for row in rows:
        line = _esc(_line(row, widths, numeric, keep))
        if used + len(line) + 1 + NOTE_RESERVE > TEXT_MAX:
            break
        lines.append(line)
        used += len(line) + 1
        shown += 1

    total = section.row_count if section.row_count is not None else len(section.rows)
    notes = []
    if total > shown:
        notes.append(f"{total - shown:,} more {_plural(total - shown, 'row')}")
    if keep < width:
        notes.append(f"{width - keep:,} more {_plural(width - keep, 'column')}")
    if notes:
        lines.append("… " + ", ".join(notes))
    return "```\n" + "\n".join(lines) + "\n```", shown


def _line(cells: list[str], widths: list[int], right: list[bool], keep: int) -> str:
    padded = [_pad(cells[i], widths[i], right[i]) for i in range(keep)]
    return "  ".join(padded).rstrip()


def _actions(n: Notification) -> ActionsBlock | None:
    buttons: list[ButtonElement] = []
    if n.open_url and len(n.open_url) <= URL_MAX:
        buttons.append(ButtonElement(text="Open report", url=n.open_url, style="primary", action_id="open_report"))
    formats = [f.format.upper() for f in n.files]
    for index, file in enumerate(n.files):
        if len(buttons) >= MAX_BUTTONS:
            break
        if not file.url or len(file.url) > URL_MAX:
            continue
        label = file.format.upper() if formats.count(file.format.upper()) == 1 else file.filename
        buttons.append(
            ButtonElement(
                text=PlainTextObject(text=_clip(f"Download {label}", BUTTON_TEXT_MAX), emoji=False),
                url=file.url,
                action_id=f"download_{index}",
            )
        )
    return ActionsBlock(elements=buttons) if buttons else None


def _fallback(n: Notification) -> str:
    """The notification text (and what screen readers and old clients show): subject, headline, error."""
    text = f"{_esc(n.subject or n.name)}: {_esc(n.headline)}"
    if n.failed and n.error:
        text += f" Error: {_esc(n.error)}"
    return _fit(text, TEXT_MAX) or "BIApp report"


# --- text helpers -----------------------------------------------------------------------------


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_fit(text or "—", TEXT_MAX), verbatim=True))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=_fit(text or "—", TEXT_MAX), verbatim=True)])


def _esc(text: object) -> str:
    """Slack's three mrkdwn control characters; everything else is shown as written."""
    return str(text if text is not None else "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fit(escaped: str, limit: int) -> str:
    """Like `_clip`, for already-escaped text: never cut an entity such as `&amp;` in half."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _cell(value: object) -> str:
    """One table cell: a single line, no ``` that would end the code block, at most CELL_MAX wide."""
    text = " ".join(str(value if value is not None else "").split()).replace("`", "ˋ")
    if _width(text) <= CELL_MAX:
        return text
    out, used = [], 0
    for char in text:
        w = _char_width(char)
        if used + w > CELL_MAX - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * (width - _width(text))
    return space + text if right else text + space


def _width(text: str) -> int:
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    """Monospace columns a character takes: CJK and emoji take two, combining marks none."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
