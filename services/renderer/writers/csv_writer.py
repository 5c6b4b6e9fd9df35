"""CSV: UTF-8 (optional BOM), RFC 4180 quoting, ISO dates, one file per section (zipped)."""

from __future__ import annotations

import csv
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from services.renderer.writers import FORMULA_TRIGGERS, RenderedFile, RenderMeta, Section, neutralise
from shared.text import slugify

# Types the csv module already writes as we want them (date -> ISO 8601, None -> empty).
_AS_IS = frozenset({int, float, bool, date, str, type(None)})
# Types that need a look: text (formula injection), datetimes (report zone), Decimal (no exponent).
_SPECIAL = frozenset({str, datetime, Decimal})


class CsvWriter:
    format = "csv"

    def __init__(self, workdir: Path, *, bom: bool = False, timezone: str = "UTC"):
        self.workdir = workdir
        self.bom = bom
        self.zone = ZoneInfo(timezone)
        self.sections: list[tuple[str, Path]] = []
        self._handle = None
        self._writerow = None

    def _value(self, value: object) -> object:
        kind = type(value)
        if kind is str:
            return neutralise(value)
        if kind is datetime:
            # Aware times in the report's zone, offset kept: "2026-11-28 00:30:00+01:00".
            return value.astimezone(self.zone) if value.tzinfo else value
        if kind is Decimal:
            return format(value, "f")  # never "1E+3" or "0E-8"
        if kind in _AS_IS:
            return value
        return str(value)

    def begin_section(self, section: Section) -> None:
        path = self.workdir / f"csv-section-{len(self.sections)}.csv"
        self._handle = open(path, "w", newline="", encoding="utf-8-sig" if self.bom else "utf-8")
        writer = csv.writer(self._handle, dialect="excel", lineterminator="\r\n")
        self._writerow = writer.writerow
        self._writerow([neutralise(c.label or c.name) for c in section.columns])
        self.sections.append((section.title, path))

    def write_row(self, row: tuple) -> None:
        # The hot path: the type set is computed in C; most rows go to the csv module untouched.
        kinds = set(map(type, row))
        if kinds <= _AS_IS and (
            str not in kinds or FORMULA_TRIGGERS.isdisjoint([v[:1] for v in row if type(v) is str])
        ):
            self._writerow(row)
            return
        value, special = self._value, _SPECIAL
        self._writerow([value(v) if type(v) in special or type(v) not in _AS_IS else v for v in row])

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
