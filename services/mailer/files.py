"""What goes into the email from the rendered files: a preview of the first rows and the size guard.

The preview is read back from the CSV (or XLSX) artifact, never by re-running the
query. The size guard keeps the attached bytes of one message within
BIAPP_MAX_ATTACHMENT_BYTES: smaller files attach as they are (smallest first),
a file that does not fit is zipped, and one that still does not fit becomes a
signed download link.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.mailer.compose import PREVIEW_ROWS, Attachment, Preview, safe_filename
from shared.models import Artifact

# XLSX and zipped CSV must be read whole; past this size the email just has no preview.
MAX_PREVIEW_SOURCE_BYTES = 20 * 1024 * 1024

Reader = Callable[[Artifact], Iterator[bytes]]


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, so csv can read lazily."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows_from_csv(handle: io.TextIOBase, limit: int) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in csv.reader(handle):
        rows.append(row)
        if len(rows) > limit:
            break
    return rows


def _preview_rows(artifact: Artifact, read: Reader, limit: int) -> list[list[str]] | None:
    mime = artifact.content_type.split(";")[0].strip().lower()
    if mime == "text/csv":
        with io.TextIOWrapper(
            io.BufferedReader(_ChunkStream(read(artifact))), encoding="utf-8-sig", errors="replace", newline=""
        ) as handle:
            return _rows_from_csv(handle, limit)
    if artifact.size > MAX_PREVIEW_SOURCE_BYTES:
        return None
    data = b"".join(read(artifact))
    if mime == "application/zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                return None
            with archive.open(names[0]) as member:
                handle = io.TextIOWrapper(member, encoding="utf-8-sig", errors="replace", newline="")
                return _rows_from_csv(handle, limit)
    if artifact.format == "xlsx":
        from openpyxl import load_workbook

        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            rows = []
            for row in workbook.worksheets[0].iter_rows(values_only=True):
                rows.append([_text(v) for v in row])
                if len(rows) > limit:
                    break
            return rows
        finally:
            workbook.close()
    return None


def read_preview(artifacts: list[Artifact], read: Reader, total_rows: int, limit: int = PREVIEW_ROWS) -> Preview | None:
    """The header and first `limit` rows from the cheapest file to read (CSV, then XLSX)."""
    ranked = sorted(artifacts, key=lambda a: (a.format != "csv", a.format != "xlsx", a.size))
    for artifact in ranked:
        if artifact.format == "pdf":
            continue
        try:
            rows = _preview_rows(artifact, read, limit)
        except (OSError, ValueError, zipfile.BadZipFile, KeyError, csv.Error):
            rows = None  # a preview is a nicety; never fail a delivery for it
        if rows:
            header, body = rows[0], rows[1 : limit + 1]
            return Preview(
                columns=[_text(c) for c in header],
                rows=[[_text(v) for v in r] for r in body],
                total_rows=max(total_rows, len(body)),
            )
    return None


@dataclass(frozen=True)
class FilePlan:
    attachments: list[Attachment]
    too_large: list[Artifact]


def _zip(artifact: Artifact, read: Reader, budget: int) -> bytes | None:
    """Deflate one file; None as soon as the archive outgrows `budget`."""
    with tempfile.SpooledTemporaryFile(max_size=min(budget, 64 * 1024 * 1024) + 1) as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            with archive.open(safe_filename(artifact.filename), "w", force_zip64=True) as member:
                for chunk in read(artifact):
                    member.write(chunk)
                    if spool.tell() > budget:
                        return None
        if spool.tell() > budget:
            return None
        spool.seek(0)
        return spool.read()


def plan_files(artifacts: list[Artifact], read: Reader, limit: int) -> FilePlan:
    """Attach what fits in `limit` bytes (zipping where that helps); the rest becomes links."""
    remaining = limit
    chosen: dict[object, Attachment] = {}
    too_large: list[Artifact] = []
    for artifact in sorted(artifacts, key=lambda a: a.size):
        if artifact.size <= remaining:
            chosen[artifact.id] = Attachment(artifact.filename, artifact.content_type, b"".join(read(artifact)))
            remaining -= artifact.size
            continue
        already_zipped = artifact.content_type.split(";")[0].strip().lower() == "application/zip"
        data = None if already_zipped else _zip(artifact, read, remaining)
        if data is None:
            too_large.append(artifact)
            continue
        chosen[artifact.id] = Attachment(f"{safe_filename(artifact.filename)}.zip", "application/zip", data)
        remaining -= len(data)
    ordered = [chosen[a.id] for a in artifacts if a.id in chosen]
    return FilePlan(ordered, [a for a in artifacts if a in too_large])
