"""The manifest written beside every artifact: what a restore and an auditor need to know."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from backup.dependency_models import Dependencies
from backup.files import atomic_file
from backup.layout import manifest_name  # noqa: F401  (callers import it from here too)
from backup.models import Compression, DumpFormat, RestoreCheck

MANIFEST_VERSION = 1


class ManifestPart(BaseModel):
    """One piece of an artifact stored in parts (Telegram), in order."""

    index: int
    size_bytes: int
    sha256: str
    message_id: int
    file_id: str


class Manifest(BaseModel):
    manifest_version: int = MANIFEST_VERSION
    project_id: str
    project_name: str
    schema_name: str
    format: DumpFormat
    compression: Compression
    artifact: str  # file name of the artifact, relative to the manifest
    size_bytes: int  # stored (compressed) size
    raw_bytes: int  # size of pg_dump's output before compression
    sha256: str  # of the stored artifact (after encryption, when encrypted)
    encryption: str | None = None  # "age-x25519" when encrypted
    recipients: list[str] = []  # age public keys it was encrypted to
    tables: list[str]
    table_count: int
    # Exact rows per table, counted in the snapshot the dump was taken in.
    row_counts: dict[str, int] = {}
    pg_dump_version: str
    server_version: str
    started_at: datetime
    finished_at: datetime
    dump_seconds: float
    parts: list[ManifestPart] | None = None  # set by backends that store the artifact in parts
    verification: RestoreCheck | None = None  # set by a test restore (verify_restore)
    # What the schema needs from outside itself, and its large objects (appended to the
    # artifact's stream). None: a backup taken before they were recorded.
    dependencies: Dependencies | None = None

    def to_bytes(self) -> bytes:
        """The stored form: what a signature covers, byte for byte."""
        return self.model_dump_json(indent=2).encode()

    def write(self, path: Path) -> None:
        with atomic_file(path) as file:
            file.write(self.to_bytes())

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.model_validate_json(path.read_text())
