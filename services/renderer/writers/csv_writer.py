"""CSV: UTF-8 (optional BOM), RFC 4180 quoting, ISO dates, one file per section (zipped)."""

from __future__ import annotations

import csv
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from services.renderer.writers import RenderedFile, RenderMeta, neutralise
from shared.query.engine import ColumnInfo
from shared.text import slugify


def csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


class CsvWriter:
    format = "csv"

    def __init__(self, workdir: Path, *, bom: bool = False):
        self.workdir = workdir
        self.bom = bom
        self.sections: list[tuple[str, Path]] = []
        self._handle = None
        self._writer = None

    def begin_section(self, title: str, columns: list[ColumnInfo]) -> None:
        path = self.workdir / f"section-{len(self.sections)}.csv"
        self._handle = open(path, "w", newline="", encoding="utf-8-sig" if self.bom else "utf-8")
        self._writer = csv.writer(self._handle, dialect="excel", lineterminator="\r\n")
        self._writer.writerow([neutralise(c.label or c.name) for c in columns])
        self.sections.append((title, path))

    def write_row(self, row: tuple) -> None:
        self._writer.writerow([csv_value(v) for v in row])

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
                    name = f"{index:02d}-{slugify(title)}-{len(used)}.csv"
                used.add(name)
                zf.write(path, name)
        return RenderedFile("csv", archive, f"{base_name}.csv.zip", "application/zip")
