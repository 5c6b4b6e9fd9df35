"""Slack Block Kit and Teams Adaptive Card payloads: checked against their documented shapes and limits.

A small recursive checker (a subset of JSON Schema: type, required, properties, items, enum,
lengths, item counts, `$ref`, and `oneOf` by a `type` discriminator) holds each platform's rules,
and every Slack block also round-trips through slack-sdk's own models and their validators.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from services.mailer.channels.slack_message import slack_message
from services.mailer.channels.teams_card import teams_message
from services.mailer.notification import FileLink, Notification, Section

RUN = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST in Berlin


# --- a tiny JSON-schema-like checker -------------------------------------------------------------

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "null": type(None),
}


def check(value: Any, schema: dict, defs: dict | None = None, path: str = "$") -> list[str]:
    """Every way `value` breaks `schema`, as `path: problem` lines (empty when it conforms)."""
    defs = defs or {}
    if "$ref" in schema:
        return check(value, defs[schema["$ref"]], defs, path)
    errors: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(isinstance(value, _TYPES[k]) and not (k != "boolean" and isinstance(value, bool)) for k in kinds):
            return [f"{path}: expected {schema['type']}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: {len(value)} characters > {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items > {schema['maxItems']}")
        if "items" in schema:
            for index, item in enumerate(value):
                errors += check(item, schema["items"], defs, f"{path}[{index}]")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{path}: missing {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += check(item, properties[key], defs, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected {key!r}")
        if "oneOf" in schema:  # discriminated by the object's "type"
            variant = schema["oneOf"].get(value.get("type"))
            if variant is None:
                errors.append(f"{path}: type {value.get('type')!r} not one of {sorted(schema['oneOf'])}")
            else:
                errors += check(value, variant, defs, path)
    return errors


def conforms(value: Any, schema: dict, defs: dict | None = None) -> None:
    errors = check(value, schema, defs)
    assert not errors, "\n".join(errors[:20])


def test_the_checker_reports_what_is_wrong():
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "maxLength": 2}}}
    assert check({"a": "ok"}, schema) == []
    assert check({"a": "long"}, schema) == ["$.a: 4 characters > 2"]
    assert check({}, schema) == ["$: missing 'a'"]
    assert check({"a": True}, {"properties": {"a": {"type": "integer"}}}) == ["$.a: expected integer, got bool"]


# --- Slack Block Kit -----------------------------------------------------------------------------


def _slack_text(kind: str, max_length: int) -> dict:
    return {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"const": kind},
            "text": {"type": "string", "minLength": 1, "maxLength": max_length},
            "emoji": {"type": "boolean"},
            "verbatim": {"type": "boolean"},
        },
        "additionalProperties": False,
    }


MRKDWN = _slack_text("mrkdwn", 3000)
BUTTON = {
    "type": "object",
    "required": ["type", "text", "url"],
    "properties": {
        "type": {"const": "button"},
        "text": _slack_text("plain_text", 75),
        "url": {"type": "string", "minLength": 1, "maxLength": 3000},
        "action_id": {"type": "string", "maxLength": 255},
        "style": {"enum": ["primary", "danger"]},
    },
    "additionalProperties": False,
}
SLACK_BLOCK = {
    "type": "object",
    "required": ["type"],
    "oneOf": {
        "header": {"required": ["text"], "properties": {"text": _slack_text("plain_text", 150)}},
        "section": {
            "properties": {
                "text": MRKDWN,
                "fields": {"type": "array", "minItems": 1, "maxItems": 10, "items": _slack_text("mrkdwn", 2000)},
            },
        },
        "context": {
            "required": ["elements"],
            "properties": {"elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": MRKDWN}},
        },
        "divider": {},
        "actions": {
            "required": ["elements"],
            "properties": {"elements": {"type": "array", "minItems": 1, "maxItems": 25, "items": BUTTON}},
        },
        "image": {  # an image_url, or a slack_file uploaded by a bot (what we send)
            "required": ["slack_file", "alt_text"],
            "properties": {
                "slack_file": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                "alt_text": {"type": "string", "maxLength": 2000},
            },
        },
    },
}
SLACK_MESSAGE = {
    "type": "object",
    "required": ["text", "blocks"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 3000},
        "blocks": {"type": "array", "minItems": 1, "maxItems": 50, "items": SLACK_BLOCK},
    },
    "additionalProperties": False,
}


def assert_valid_slack(message: dict) -> None:
    conforms(message, SLACK_MESSAGE)
    assert message["text"].strip()
    for block in message["blocks"]:
        assert block["type"] != "section" or "text" in block or "fields" in block
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict() == block  # nothing lost or invented on the way through slack-sdk
    json.dumps(message)  # what the webhook and chat.postMessage send


def mrkdwn_texts(message: dict) -> list[str]:
    texts = []
    for block in message["blocks"]:
        if block["type"] == "section":
            texts += [block["text"]["text"]] if "text" in block else []
            texts += [f["text"] for f in block.get("fields", ())]
        elif block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
    return texts


def code_blocks(message: dict) -> list[str]:
    return [t for t in mrkdwn_texts(message) if t.startswith("```")]


def blocks_of(message: dict, kind: str) -> list[dict]:
    return [b for b in message["blocks"] if b["type"] == kind]


def notification(**changes: Any) -> Notification:
    base: dict[str, Any] = {
        "type": "report.delivered",
        "subject": "Weekly revenue — 2026-03-30",
        "headline": "Weekly revenue ran and produced 5 rows.",
        "name": "Weekly revenue",
        "object_kind": "report",
        "object_id": "7f1c2b9e-0000-4000-8000-000000000001",
        "run_id": "0b6f3a3c-1111-4000-8000-000000000002",
        "status": "rendered",
        "timezone": "Europe/Berlin",
        "scheduled_for": RUN,
        "started_at": RUN + timedelta(seconds=3),
        "finished_at": RUN + timedelta(seconds=9),
        "row_count": 5,
        "sections": (
            Section(
                title="Revenue by region",
                row_count=5,
                columns=("Region", "Orders", "Revenue"),
                rows=(
                    ("North", "120", "12,400.50"),
                    ("South", "98", "9,100.00"),
                    ("East", "7", "310.25"),
                    ("West", "1,204", "150,002.00"),
                    ("Central", "0", "0.00"),
                ),
            ),
        ),
        "files": (
            FileLink("weekly-revenue.xlsx", "xlsx", 18_200, "https://reports.example.com/f/1", RUN + timedelta(days=7)),
            FileLink("weekly-revenue.pdf", "pdf", 52_000, "https://reports.example.com/f/2", RUN + timedelta(days=7)),
        ),
        "open_url": "https://reports.example.com/reports/7f1c2b9e",
    }
    base.update(changes)
    return Notification(**base)


def test_slack_plain_success_with_one_section():
    message = slack_message(notification())
    assert_valid_slack(message)

    header = blocks_of(message, "header")
    assert header[0]["text"]["text"] == "Weekly revenue — 2026-03-30"
    assert message["blocks"][0] == header[0]
    run_line = message["blocks"][1]["elements"][0]["text"]
    assert "2026-03-30 09:00 CEST" in run_line and "5 rows" in run_line
    texts = mrkdwn_texts(message)
    assert "Weekly revenue ran and produced 5 rows." in texts
    assert "*Revenue by region*  ·  5 rows" in texts

    [table] = code_blocks(message)
    lines = table.strip("`\n").split("\n")
    assert lines[0].split() == ["Region", "Orders", "Revenue"]
    assert len(lines) == 2 + 5  # header, rule, five rows, no "more rows" note
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned: every line as wide as the rule
    assert lines[1] == "-------  ------  ----------"
    assert lines[5] == "West      1,204  150,002.00"

    [actions] = blocks_of(message, "actions")
    buttons = actions["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Open report", "Download XLSX", "Download PDF"]
    assert buttons[0]["style"] == "primary" and buttons[0]["url"] == "https://reports.example.com/reports/7f1c2b9e"
    assert buttons[1]["url"] == "https://reports.example.com/f/1"
    footer = message["blocks"][-1]
    assert footer["type"] == "context" and "BIApp Reports" in footer["elements"][0]["text"]
    assert "0b6f3a3c-1111-4000-8000-000000000002" in footer["elements"][0]["text"]
    assert message["text"].startswith("Weekly revenue — 2026-03-30: Weekly revenue ran")


def test_slack_says_first_k_of_n_when_the_section_was_cut():
    section = Section("Orders", row_count=1234, columns=("id",), rows=tuple((str(i),) for i in range(3)))
    message = slack_message(notification(sections=(section,)))
    assert_valid_slack(message)
    assert "*Orders*  ·  first 3 of 1,234 rows" in mrkdwn_texts(message)
    assert code_blocks(message)[0].endswith("… 1,231 more rows\n```")


def test_slack_dashboard_with_sixty_sections_stays_within_fifty_blocks():
    sections = tuple(
        Section(f"Widget {i}", row_count=3, columns=("k", "v"), rows=(("a", "1"), ("b", "2"), ("c", "3")))
        for i in range(60)
    )
    message = slack_message(notification(sections=sections, object_kind="dashboard"), image_files=("F0001",))
    assert_valid_slack(message)
    assert len(message["blocks"]) <= 50

    shown = [t for t in mrkdwn_texts(message) if t.startswith("*Widget ")]
    assert 0 < len(shown) < 60
    assert shown == [f"*Widget {i}*  ·  3 rows" for i in range(len(shown))]  # the first ones, in order
    left = 60 - len(shown)
    assert f"_{left} more sections in the files_" in mrkdwn_texts(message)
    assert len(blocks_of(message, "image")) == 1 and blocks_of(message, "image")[0]["alt_text"] == "Chart"
    assert message["blocks"][-1]["type"] == "context"  # the footer survives


def test_slack_escapes_control_characters_in_user_data():
    section = Section("<b>Top</b> & co", row_count=1, columns=("<script>&",), rows=(("<script>alert(1)</script>&",),))
    message = slack_message(
        notification(
            subject="Q1 <b> & more",
            headline="Rows for <!channel> & <@U123>",
            facts=(("Cond <x>", "a & b"),),
            sections=(section,),
        )
    )
    assert_valid_slack(message)
    joined = "\n".join(mrkdwn_texts(message))
    for raw in ("<script>", "<!channel>", "<@U123>", "<b>", "<x>"):
        assert raw not in joined
    assert "&lt;script&gt;&amp;" in joined
    assert "Rows for &lt;!channel&gt; &amp; &lt;@U123&gt;" in joined
    assert "*Cond &lt;x&gt;*\na &amp; b" in joined
    assert "*&lt;b&gt;Top&lt;/b&gt; &amp; co*" in joined
    assert re.sub(r"&(amp|lt|gt);", "", joined).count("&") == 0  # every & starts an entity
    assert "<" not in message["text"] and "Q1 &lt;b&gt; &amp; more" in message["text"]
    # header is plain_text: shown as written, no entities
    assert blocks_of(message, "header")[0]["text"]["text"] == "Q1 <b> & more"
    # no mention or link parsing on anything built from user data
    assert all(
        t.get("verbatim") is True
        for b in message["blocks"]
        for t in ([b["text"]] if b["type"] == "section" and "text" in b else []) + b.get("fields", [])
    )


def test_slack_respects_every_limit_with_very_long_values():
    long = "x&<" * 2000  # escapes to 5 times its length
    wide = Section(
        title="T" * 4000,
        row_count=100_000,
        columns=tuple(f"column {i} " + "h" * 40 for i in range(80)),
        rows=tuple(tuple("v" * 300 for _ in range(80)) for _ in range(200)),
    )
    tall = Section("Tall", row_count=5000, columns=("a", "b"), rows=tuple((long, "1") for _ in range(500)))
    files = tuple(
        FileLink(f"f{i}.csv", "csv" + "z" * 100 * i, 1, "https://x.example/" + "p" * 10 * i, RUN) for i in range(8)
    )
    message = slack_message(
        notification(
            subject="S" * 400,
            headline=long,
            facts=tuple((f"label {i} {long}", long) for i in range(25)),
            sections=(wide, tall),
            files=files,
            open_url="https://reports.example.com/" + "u" * 5000,  # too long for a button: left out
            error=long,
        ),
        image_files=("", "F0CHART2"),
    )
    assert_valid_slack(message)
    assert blocks_of(message, "header")[0]["text"]["text"] == "S" * 149 + "…"
    assert all(len(b["fields"]) <= 10 for b in blocks_of(message, "section") if "fields" in b)
    assert sum(len(b.get("fields", ())) for b in blocks_of(message, "section")) <= 30
    [actions] = blocks_of(message, "actions")
    assert len(actions["elements"]) == 5 and all(b["text"]["text"].startswith("Download ") for b in actions["elements"])
    assert [b["slack_file"] for b in blocks_of(message, "image")] == [{"id": "F0CHART2"}]

    wide_table, tall_table = code_blocks(message)
    wide_lines = wide_table.split("\n")[1:-1]
    shown = len(wide_lines) - 3  # header, rule, rows, note
    assert shown >= 3 and f"*{'T' * 249}…*  ·  first {shown} of 100,000 rows" in mrkdwn_texts(message)
    assert wide_lines[-1] == f"… {100_000 - shown:,} more rows, {80 - len(wide_lines[0].split('  '))} more columns"
    assert all(len(cell) <= 24 for line in wide_lines[:-1] for cell in line.split("  "))
    assert all(len(line) <= 400 for line in wide_lines)
    assert wide_lines[2] == "  ".join(["v" * 23 + "…"] * len(wide_lines[0].split("  ")))
    shown = len(tall_table.split("\n")) - 5  # fences, header, rule, note
    assert tall_table.endswith(f"\n… {5000 - shown:,} more rows\n```")
    assert f"*Tall*  ·  first {shown} of 5,000 rows" in mrkdwn_texts(message)
    for text in mrkdwn_texts(message):
        assert re.search(r"&(amp?|lt?|gt?)?…", text) is None  # no entity cut in half
        assert text.count("*") % 2 == 0  # bold titles and labels stay closed


def test_slack_failed_alert_warns_and_shows_the_error():
    message = slack_message(
        notification(
            type="alert.error",
            object_kind="alert",
            status="error",
            subject="Alert: Stock below 10 could not be checked",
            headline="Stock below 10 could not be checked.",
            error="connection refused by warehouse-db:5432",
            row_count=None,
            sections=(),
            files=(),
            facts=(("Condition", "stock < 10"), ("Observed", "—")),
        )
    )
    assert_valid_slack(message)
    [warning] = [t for t in mrkdwn_texts(message) if t.startswith(":warning:")]
    assert "Stock below 10 could not be checked." in warning
    assert "*Error:* connection refused by warehouse-db:5432" in warning
    assert "connection refused" in message["text"]
    fields = [f["text"] for b in blocks_of(message, "section") for f in b.get("fields", ())]
    assert fields == ["*Condition*\nstock &lt; 10", "*Observed*\n—"]


def test_slack_without_links_has_no_actions_block():
    message = slack_message(notification(open_url=None, files=()))
    assert_valid_slack(message)
    assert blocks_of(message, "actions") == []
    files_without_url = (FileLink("a.csv", "csv", 1, "", RUN),)
    assert blocks_of(slack_message(notification(open_url=None, files=files_without_url)), "actions") == []


def test_slack_same_format_twice_names_the_files():
    files = (
        FileLink("north.csv", "csv", 1, "https://x.example/1", RUN),
        FileLink("south.csv", "csv", 1, "https://x.example/2", RUN),
    )
    message = slack_message(notification(open_url=None, files=files))
    labels = [b["text"]["text"] for b in blocks_of(message, "actions")[0]["elements"]]
    assert labels == ["Download north.csv", "Download south.csv"]


# --- Teams Adaptive Card -------------------------------------------------------------------------

TEAMS_DEFS: dict[str, dict] = {
    "text": {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"const": "TextBlock"},
            "text": {"type": "string"},
            "wrap": {"type": "boolean"},
            "size": {"enum": ["Small", "Default", "Medium", "Large", "ExtraLarge"]},
            "weight": {"enum": ["Lighter", "Default", "Bolder"]},
            "color": {"enum": ["Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"]},
            "isSubtle": {"type": "boolean"},
            "spacing": {"enum": ["None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"]},
            "separator": {"type": "boolean"},
            "style": {"enum": ["default", "heading"]},
        },
    },
    "element": {
        "type": "object",
        "required": ["type"],
        "oneOf": {
            "TextBlock": {"$ref": "text"},
            "FactSet": {
                "required": ["facts"],
                "properties": {
                    "facts": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["title", "value"],
                            "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    }
                },
            },
            "Table": {
                "required": ["columns", "rows"],
                "properties": {
                    "columns": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 8,
                        "items": {
                            "type": "object",
                            "required": ["width"],
                            "properties": {"width": {"type": "integer"}},
                        },
                    },
                    "firstRowAsHeader": {"type": "boolean"},
                    "rows": {
                        "type": "array",
                        "maxItems": 11,
                        "items": {
                            "type": "object",
                            "required": ["type", "cells"],
                            "properties": {
                                "type": {"const": "TableRow"},
                                "cells": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["type", "items"],
                                        "properties": {
                                            "type": {"const": "TableCell"},
                                            "items": {"type": "array", "minItems": 1, "items": {"$ref": "element"}},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "Container": {
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": {"$ref": "element"}}},
            },
            "ColumnSet": {"properties": {"columns": {"type": "array"}}},
            "Image": {"required": ["url"], "properties": {"url": {"type": "string", "minLength": 1}}},
        },
    },
    "action": {
        "type": "object",
        "required": ["type", "title", "url"],
        "properties": {
            "type": {"const": "Action.OpenUrl"},
            "title": {"type": "string", "minLength": 1},
            "url": {"type": "string", "pattern": r"^https?://"},
            "style": {"enum": ["default", "positive", "destructive"]},
        },
        "additionalProperties": False,
    },
}
TEAMS_MESSAGE = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "contentUrl", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["$schema", "type", "version", "body"],
                        "properties": {
                            "$schema": {"const": "http://adaptivecards.io/schemas/adaptive-card.json"},
                            "type": {"const": "AdaptiveCard"},
                            "version": {"const": "1.5"},
                            "msteams": {"type": "object", "properties": {"width": {"const": "Full"}}},
                            "body": {"type": "array", "minItems": 1, "items": {"$ref": "element"}},
                            "actions": {"type": "array", "maxItems": 6, "items": {"$ref": "action"}},
                        },
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def walk(elements: list[dict]):
    for element in elements:
        yield element
        if element["type"] == "Table":
            for row in element["rows"]:
                for cell in row["cells"]:
                    yield from walk(cell["items"])
        elif element["type"] == "Container":
            yield from walk(element["items"])


def assert_valid_teams(message: dict) -> dict:
    conforms(message, TEAMS_MESSAGE, TEAMS_DEFS)
    card = message["attachments"][0]["content"]
    for table in (e for e in walk(card["body"]) if e["type"] == "Table"):
        assert all(len(row["cells"]) == len(table["columns"]) for row in table["rows"])
        assert len(table["rows"]) <= 11
        for cell in (c for row in table["rows"] for c in row["cells"]):
            assert all(len(item["text"]) <= 60 for item in cell["items"])
    assert len(json.dumps(message, ensure_ascii=False).encode()) <= 28_000  # Teams' message size limit
    return card


def texts(card: dict) -> list[str]:
    return [e["text"] for e in walk(card["body"]) if e["type"] == "TextBlock"]


def test_teams_plain_success():
    card = assert_valid_teams(teams_message(notification()))
    title = card["body"][0]
    assert title == {
        "type": "TextBlock",
        "text": "Weekly revenue — 2026-03-30",
        "wrap": True,
        "size": "Large",
        "weight": "Bolder",
        "style": "heading",
    }
    assert card["body"][1]["isSubtle"] and card["body"][1]["text"] == "Run 2026-03-30 09:00 CEST · 5 rows"
    assert "Weekly revenue ran and produced 5 rows." in texts(card)
    assert not any(e.get("color") == "Attention" for e in card["body"])
    [table] = [e for e in card["body"] if e["type"] == "Table"]
    assert table["firstRowAsHeader"] is True and table["columns"] == [{"width": 1}] * 3
    cells = [[c["items"][0]["text"] for c in row["cells"]] for row in table["rows"]]
    assert cells[0] == ["Region", "Orders", "Revenue"] and cells[4] == ["West", "1,204", "150,002.00"]
    assert [(a["title"], a["url"]) for a in card["actions"]] == [
        ("Open report", "https://reports.example.com/reports/7f1c2b9e"),
        ("Download XLSX", "https://reports.example.com/f/1"),
        ("Download PDF", "https://reports.example.com/f/2"),
    ]
    assert any("BIApp Reports" in t and "0b6f3a3c" in t for t in texts(card))


def test_teams_cuts_tables_to_ten_rows_and_eight_columns_and_says_so():
    section = Section(
        "Orders",
        row_count=1234,
        columns=tuple(f"c{i}" for i in range(12)),
        rows=tuple(tuple("y" * 100 for _ in range(12)) for _ in range(40)),
    )
    card = assert_valid_teams(teams_message(notification(sections=(section,))))
    [table] = [e for e in card["body"] if e["type"] == "Table"]
    assert len(table["rows"]) == 11 and len(table["columns"]) == 8
    assert table["rows"][1]["cells"][0]["items"][0]["text"] == "y" * 59 + "…"
    assert "… first 10 of 1,234 rows, 8 of 12 columns" in texts(card)


def test_teams_ragged_rows_and_no_header():
    section = Section("Ragged", row_count=2, columns=(), rows=(("a",), ("b", "c", "d")))
    card = assert_valid_teams(teams_message(notification(sections=(section,))))
    [table] = [e for e in card["body"] if e["type"] == "Table"]
    assert table["firstRowAsHeader"] is False and len(table["rows"]) == 2


def test_teams_failed_alert_uses_attention():
    message = teams_message(
        notification(
            type="alert.error",
            object_kind="alert",
            status="error",
            headline="Stock below 10 could not be checked.",
            error="connection refused",
            sections=(),
            files=(),
            open_url=None,
            facts=(("Condition", "stock < 10"),),
        )
    )
    card = assert_valid_teams(message)
    attention = [e["text"] for e in card["body"] if e["type"] == "TextBlock" and e.get("color") == "Attention"]
    assert any("Stock below 10 could not be checked." in t for t in attention)
    assert any("connection refused" in t for t in attention)
    assert {"type": "FactSet", "facts": [{"title": "Condition", "value": "stock < 10"}]} in card["body"]
    assert card["actions"] == []


def test_teams_dashboard_with_sixty_sections_stays_under_the_size_limit():
    sections = tuple(
        Section(f"Widget {i}", row_count=50, columns=("k", "v"), rows=tuple(("k" * 60, "v" * 60) for _ in range(10)))
        for i in range(60)
    )
    card = assert_valid_teams(teams_message(notification(sections=sections)))
    shown = [t for t in texts(card) if t.startswith("Widget ")]
    assert 0 < len(shown) < 60
    assert f"{60 - len(shown)} more sections in the files" in texts(card)


@pytest.mark.parametrize("count", [0, 1, 9])
def test_teams_at_most_six_actions(count):
    files = tuple(FileLink(f"f{i}.csv", f"f{i}", 1, f"https://x.example/{i}", RUN) for i in range(count))
    card = assert_valid_teams(teams_message(notification(files=files)))
    assert len(card["actions"]) == min(1 + count, 6)


def test_slack_table_cells_stay_on_one_line_aligned_and_inside_the_code_block():
    section = Section(
        "Mixed",
        row_count=3,
        columns=("名前", "n", "note"),
        rows=(("東京都", "12", "a```b"), ("Zürich", "-3.5", "two\nlines"), ("e\u0301", "", "z")),
    )
    [table] = code_blocks(slack_message(notification(sections=(section,))))
    assert table.split("\n") == [
        "```",
        "名前       n  note",  # wide characters take two columns
        "------  ----  ---------",
        "東京都    12  aˋˋˋb",  # a ``` in a cell would end the code block
        "Zürich  -3.5  two lines",
        "e\u0301             z",  # a combining accent takes none
        "```",
    ]
