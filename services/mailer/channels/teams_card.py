"""A `Notification` as a Microsoft Teams message: an Adaptive Card 1.5 in a Workflows webhook body, no network.

The card tells what the Slack message tells: title, run time and rows, the headline (or the failure
and its error), the facts, each section's first rows as a `Table` (at most 10 rows by 8 columns),
and buttons to open the report and download its files. Teams refuses messages over about 28 KB, so
the card stays under CARD_BYTES_MAX: the sections that do not fit are left out and counted.
"""

from __future__ import annotations

import json
from typing import Any

from services.mailer.notification import Notification, Section

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_BYTES_MAX = 24_000  # Teams' limit is ~28 KB for the whole message; leave room for the envelope
MAX_ROWS = 10
MAX_COLUMNS = 8
CELL_MAX = 60
TEXT_MAX = 2000  # headline, error, fact values: the rest is in the report
MAX_FACTS = 30
MAX_ACTIONS = 6

Element = dict[str, Any]


def teams_message(n: Notification) -> dict[str, Any]:
    """The body to POST to a Teams Workflows webhook ("Post to a channel when a webhook request is received")."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(n)}],
    }


def adaptive_card(n: Notification) -> dict[str, Any]:
    head: list[Element] = [
        _text(n.subject or n.name or "BIApp report", size="Large", weight="Bolder", style="heading"),
    ]
    run_line = _run_line(n)
    if run_line:
        head.append(_text(run_line, isSubtle=True, spacing="None"))
    headline = _clip(n.headline or n.name or n.subject, TEXT_MAX)
    if n.failed:
        head.append(_text(f"⚠️ {headline}", color="Attention", weight="Bolder"))
        if n.error:
            head.append(_text(f"Error: {_clip(n.error, TEXT_MAX)}", color="Attention", spacing="Small"))
    else:
        head.append(_text(headline))
    if n.facts:
        facts = [{"title": _clip(label, 200), "value": _clip(value, TEXT_MAX)} for label, value in n.facts[:MAX_FACTS]]
        head.append({"type": "FactSet", "facts": facts})

    footer = [_text(f"BIApp Reports · run {n.run_id}", isSubtle=True, size="Small", separator=True)]
    card: dict[str, Any] = {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.5",
        "msteams": {"width": "Full"},
        "body": head,
        "actions": _actions(n),
    }

    # Add whole sections while the card stays under the size limit; count the ones left out.
    room = CARD_BYTES_MAX - _size(card) - _size(footer) - 200  # 200: the "N more sections" line
    sections: list[Element] = []
    shown = 0
    for section in n.sections:
        elements = _section(section)
        size = _size(elements)
        if size > room:
            break
        sections.extend(elements)
        room -= size
        shown += 1
    left = len(n.sections) - shown
    if left:
        sections.append(_text(f"{left:,} more section{'' if left == 1 else 's'} in the files", isSubtle=True))
    card["body"] = head + sections + footer
    return card


def _run_line(n: Notification) -> str:
    parts = []
    if n.type == "report.test":
        parts.append("Test run")
    when = n.local(n.when)
    if when:
        parts.append(f"Run {when}")
    if n.row_count is not None:
        parts.append(f"{n.row_count:,} row{'' if n.row_count == 1 else 's'}")
    return " · ".join(parts)


def _section(section: Section) -> list[Element]:
    """The section's title, its first rows as a Table, and what was cut."""
    elements = [_text(section.title or "Untitled", weight="Bolder", spacing="Large", separator=True)]
    total = section.row_count
    width = len(section.columns) or max((len(row) for row in section.rows), default=0)
    if not section.rows or not width:
        if total == 0:
            elements.append(_text("No rows", isSubtle=True, spacing="None"))
        return elements

    keep = min(width, MAX_COLUMNS)
    rows = [tuple(row[:keep]) + ("",) * (keep - len(row[:keep])) for row in section.rows[:MAX_ROWS]]
    table_rows = [_row(section.columns[:keep], header=True)] if section.columns else []
    table_rows += [_row(row) for row in rows]
    elements.append(
        {
            "type": "Table",
            "columns": [{"width": 1} for _ in range(keep)],
            "firstRowAsHeader": bool(section.columns),
            "rows": table_rows,
        }
    )

    notes = []
    known = total if total is not None else len(section.rows)
    if len(rows) < known:
        notes.append(f"first {len(rows):,} of {known:,} rows")
    if keep < width:
        notes.append(f"{keep} of {width} columns")
    if notes:
        elements.append(_text("… " + ", ".join(notes), isSubtle=True, size="Small", spacing="Small"))
    return elements


def _row(cells: tuple[str, ...], *, header: bool = False) -> Element:
    extra = {"weight": "Bolder"} if header else {}
    return {
        "type": "TableRow",
        "cells": [{"type": "TableCell", "items": [_text(_clip(_flat(cell), CELL_MAX), **extra)]} for cell in cells],
    }


def _actions(n: Notification) -> list[Element]:
    actions: list[Element] = []
    if n.open_url:
        actions.append({"type": "Action.OpenUrl", "title": "Open report", "url": n.open_url, "style": "positive"})
    formats = [f.format.upper() for f in n.files]
    for file in n.files:
        if len(actions) >= MAX_ACTIONS:
            break
        if file.url:
            label = file.format.upper() if formats.count(file.format.upper()) == 1 else file.filename
            actions.append({"type": "Action.OpenUrl", "title": _clip(f"Download {label}", 75), "url": file.url})
    return actions


def _text(text: str, **props: Any) -> Element:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def _flat(value: object) -> str:
    return " ".join(str(value if value is not None else "").split())


def _clip(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())
