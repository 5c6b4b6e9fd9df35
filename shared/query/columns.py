"""Column metadata every query result carries, ahead of its rows."""

from __future__ import annotations

from dataclasses import dataclass

COLUMN_TYPES = ("string", "integer", "decimal", "date", "datetime", "boolean")


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str = "string"  # one of COLUMN_TYPES
    label: str | None = None
    format: str | None = None
