"""Where artifact bytes live: the database (default) or a filesystem path.

Both stores take a file object and write it in chunks so that memory stays flat,
and both are exercised by the same shared test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.models import Artifact, ArtifactChunk

CHUNK_BYTES = 1024 * 1024


class ArtifactStore(Protocol):
    name: str

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None: ...

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]: ...

    def delete(self, session: Session, artifact: Artifact) -> None: ...


class DatabaseStore:
    """Chunks in the artifact_chunks table: any API replica can serve any file."""

    name = "database"

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None:
        artifact.storage = self.name
        session.flush()
        seq = 0
        while chunk := source.read(CHUNK_BYTES):
            session.execute(sa.insert(ArtifactChunk).values(artifact_id=artifact.id, seq=seq, data=chunk))
            seq += 1

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]:
        seq = 0
        while True:
            data = session.execute(
                sa.select(ArtifactChunk.data).where(ArtifactChunk.artifact_id == artifact.id, ArtifactChunk.seq == seq)
            ).scalar_one_or_none()
            if data is None:
                return
            yield data
            seq += 1

    def delete(self, session: Session, artifact: Artifact) -> None:
        session.execute(sa.delete(ArtifactChunk).where(ArtifactChunk.artifact_id == artifact.id))


class FilesystemStore:
    """Files under one directory (a shared volume when there are several replicas)."""

    name = "filesystem"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, location: str) -> Path:
        path = (self.root / location).resolve()
        if self.root not in path.parents:
            raise ValueError("artifact location escapes the store")
        return path

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None:
        if artifact.id is None:
            artifact.id = uuid.uuid4()
        location = f"{artifact.execution_id}/{artifact.id}"
        path = self._path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with open(tmp, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        artifact.storage = self.name
        artifact.location = location

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]:
        path = self._path(artifact.location or "")
        if not path.exists():
            return
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def delete(self, session: Session, artifact: Artifact) -> None:
        if artifact.location:
            self._path(artifact.location).unlink(missing_ok=True)


def build_store(spec: str) -> ArtifactStore:
    if spec == "database":
        return DatabaseStore()
    if spec.startswith("filesystem:"):
        return FilesystemStore(spec.split(":", 1)[1])
    raise ValueError(f"unknown artifact store {spec!r}")
