"""Where artifact bytes live: the database (default) or a filesystem path.

Both stores take a file object and write it in chunks so that memory stays flat,
and both are exercised by the same shared test. Writing goes to the configured
store; reading and deleting follow `artifact.storage`, so files written before an
operator changed BIAPP_ARTIFACT_STORE stay downloadable until they expire.
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

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None:
        """Write the bytes; for the database store inside the caller's transaction."""

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]:
        """The bytes in chunks; nothing when they are gone."""

    def delete(self, session: Session, artifact: Artifact) -> None:
        """Remove the bytes (database: within the session's transaction)."""

    def discard(self, artifact: Artifact) -> None:
        """Undo a save whose transaction rolled back (bytes outside the database)."""


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
        # One chunk per query: a 100 MB file never sits in memory at once.
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

    def discard(self, artifact: Artifact) -> None:
        """Rolled back with the transaction: nothing to undo."""


class FilesystemStore:
    """Files under one directory (a shared volume when there are several replicas).

    The location recorded is the absolute path, so a file stays readable after the
    setting moves to another directory or to the database store.
    """

    name = "filesystem"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, artifact: Artifact) -> Path:
        location = Path(artifact.location or "")
        path = location if location.is_absolute() else (self.root / location).resolve()
        # Locations are written only by save(); still, never follow one elsewhere.
        if path.name != str(artifact.id) or path.parent.name != str(artifact.execution_id):
            raise ValueError("artifact location does not belong to this artifact")
        return path

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None:
        if artifact.id is None:
            artifact.id = uuid.uuid4()
        path = self.root / str(artifact.execution_id) / str(artifact.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        artifact.storage = self.name
        artifact.location = str(path)

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]:
        path = self._path(artifact)
        if not path.exists():
            return
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def delete(self, session: Session, artifact: Artifact) -> None:
        if artifact.location:
            path = self._path(artifact)
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # the execution's folder, once empty
            except OSError:
                pass

    def discard(self, artifact: Artifact) -> None:
        self.delete(None, artifact)  # type: ignore[arg-type]


class ConfiguredStore:
    """Saves to the configured backend; reads and deletes by each artifact's own `storage`."""

    def __init__(self, writer: DatabaseStore | FilesystemStore):
        self.writer = writer
        self.name = writer.name

    def _for(self, artifact: Artifact) -> DatabaseStore | FilesystemStore:
        if artifact.storage == self.writer.name:
            return self.writer
        if artifact.storage == DatabaseStore.name:
            return DatabaseStore()
        if artifact.storage == FilesystemStore.name:
            return FilesystemStore(Path(artifact.location or ".").parent.parent)
        raise ValueError(f"unknown artifact storage {artifact.storage!r}")

    def save(self, session: Session, artifact: Artifact, source: BinaryIO) -> None:
        self.writer.save(session, artifact, source)

    def open(self, session: Session, artifact: Artifact) -> Iterator[bytes]:
        return self._for(artifact).open(session, artifact)

    def delete(self, session: Session, artifact: Artifact) -> None:
        self._for(artifact).delete(session, artifact)

    def discard(self, artifact: Artifact) -> None:
        if artifact.storage:
            self._for(artifact).discard(artifact)


def build_store(spec: str) -> ConfiguredStore:
    if spec == "database":
        return ConfiguredStore(DatabaseStore())
    if spec.startswith("filesystem:"):
        return ConfiguredStore(FilesystemStore(spec.split(":", 1)[1]))
    raise ValueError(f"unknown artifact store {spec!r}")
