"""CSV: UTF-8 (optional BOM), RFC 4180 quoting, a chosen separator, ISO dates, one file per section (zipped).

The hot path is one generated function per section that converts a whole row with one
inline expression per column, picked from the column's declared type: no per-cell
function calls or isinstance chains. Each expression tests the value's exact type first
and hands anything unexpected (raw SQL columns are untyped) to `_value`, the general
per-value conversion, so the output never depends on the declared type being right.
"""

from __future__ import annotations

import csv
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from services.renderer.writers import FORMULA_TRIGGERS, RenderedFile, RenderMeta, Section, neutralise
from shared.query.columns import ColumnInfo
from shared.text import slugify

# Types the csv module already writes as we want them (date -> ISO 8601, None -> empty).
_AS_IS = frozenset({int, float, bool, date, str, type(None)})
_PLAIN = _AS_IS - {str}

# One expression per column kind for the cell {v}; anything of an unexpected type takes the fallback.
_OTHERWISE = "({v} if type({v}) in _PLAIN else _value({v}))"
_EXPRESSIONS = {
    # Text: neutralise formula-like values (see neutralise()).
    "string": '("\'" + {v} if {v} and {v}[0] in _T else {v}) if type({v}) is str else ' + _OTHERWISE,
    # str() is exact and quick unless it chose an exponent ("1E+3"); format "f" never does.
    "decimal": '(s_{v} if "E" not in (s_{v} := str({v})) else format({v}, "f")) if type({v}) is _Decimal else '
    + _OTHERWISE,
    # Aware times in the report's zone, offset kept: "2026-11-28 00:30:00+01:00".
    "datetime": "({v}.astimezone(_zone) if {v}.tzinfo else {v}) if type({v}) is _datetime else " + _OTHERWISE,
}


def _decimal_text(value: Decimal) -> str:
    text = str(value)
    return text if "E" not in text else format(value, "f")  # never "1E+3" or "0E-8"


class CsvWriter:
    format = "csv"

    def __init__(self, workdir: Path, *, bom: bool = False, timezone: str = "UTC", separator: str = ","):
        self.workdir = workdir
        self.bom = bom
        self.separator = separator
        self.zone = ZoneInfo(timezone)
        self.sections: list[tuple[str, Path]] = []
        self._handle = None
        self._writerow = None
        self._convert = None

    def _value(self, value: object) -> object:
        """Any single value as the csv module should get it (the general, slower path)."""
        kind = type(value)
        if kind is str:
            return neutralise(value)
        if kind is datetime:
            return value.astimezone(self.zone) if value.tzinfo else value
        if kind is Decimal:
            return _decimal_text(value)
        if kind in _AS_IS:
            return value
        return str(value)

    def _row_converter(self, columns: list[ColumnInfo]):
        """Compile `row -> converted row` for this section's columns (names are c0, c1, …; no data in the source)."""
        names = [f"c{i}" for i in range(len(columns))]
        cells = ",\n        ".join(
            "(" + _EXPRESSIONS.get(c.type, _OTHERWISE).format(v=name) + ")"
            for c, name in zip(columns, names, strict=True)
        )
        source = f"def convert(row):\n    ({', '.join(names)},) = row\n    return (\n        {cells},\n    )\n"
        namespace = {
            "_PLAIN": _PLAIN,
            "_T": FORMULA_TRIGGERS,
            "_Decimal": Decimal,
            "_datetime": datetime,
            "_zone": self.zone,
            "_value": self._value,
        }
        exec(compile(source, "<csv row converter>", "exec"), namespace)  # noqa: S102 - source built from constants
        return namespace["convert"]

    def begin_section(self, section: Section) -> None:
        path = self.workdir / f"csv-section-{len(self.sections)}.csv"
        self._handle = open(path, "w", newline="", encoding="utf-8-sig" if self.bom else "utf-8")
        writer = csv.writer(self._handle, dialect="excel", delimiter=self.separator, lineterminator="\r\n")
        self._writerow = writer.writerow
        self._writerow([neutralise(c.label or c.name) for c in section.columns])
        self._convert = self._row_converter(section.columns) if section.columns else None
        self.sections.append((section.title, path))

    def write_row(self, row: tuple) -> None:
        try:
            converted = self._convert(row)
        except (TypeError, ValueError):  # a row not shaped like the columns: convert it cell by cell
            converted = [self._value(v) for v in row]
        self._writerow(converted)

    def end_section(self, row_count: int, truncated: bool) -> None:
        self._handle.close()
        self._handle = None

    def finish(self, meta: RenderMeta, base_name: str) -> RenderedFile:
        if len(self.sections) == 1:
            return RenderedFile("csv", self.sections[0][1], f"{base_name}.csv", "text/csv; charset=utf-8")
        archive = self.workdir / "csv.zip"
        used: set[str] = set()
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for index, (title, path) in enumerate(self.sections, start=1):
                name = f"{index:02d}-{slugify(title) or 'widget'}.csv"
                while name in used:
                    name = f"{index:02d}-{slugify(title) or 'widget'}-{len(used)}.csv"
                used.add(name)
                zf.write(path, name)
        return RenderedFile("csv", archive, f"{base_name}.csv.zip", "application/zip")

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
