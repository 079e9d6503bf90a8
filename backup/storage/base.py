"""The storage interface every backend (local, S3, Telegram) implements.

A backend stores an artifact together with its manifest and returns where they are; it can
fetch them back by that location. Uploads are resumable: a backend reports its state through
`Transfer.checkpoint` and receives it again in `Transfer.resume` when an attempt is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backup.errors import StorageError
from backup.manifest import Manifest
from backup.retention import StoredBackup


def _ignore(_: Any) -> None:
    return None


@dataclass
class Transfer:
    """Progress and resumable state of one upload or download."""

    resume: dict[str, Any] | None = None  # what a previous attempt checkpointed
    on_progress: Callable[[int], None] = _ignore  # bytes done so far; may raise to abort
    on_checkpoint: Callable[[dict[str, Any]], None] = _ignore  # called after each durable step
    requests: list[str] = field(default_factory=list)  # what was sent, for tests and logs

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.resume = state
        self.on_checkpoint(state)


Signer = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Fetched:
    """A stored manifest as it was stored (the bytes a signature covers) and its signature."""

    manifest: Manifest
    raw: bytes
    signature: bytes | None


@dataclass(frozen=True)
class Stored:
    location: str  # the URI `fetch` and restore take
    manifest_location: str


class ListingNotSupported(StorageError):
    """The backend can not list what it stored (Telegram), so retention can not be applied."""

    retryable = False


class Storage(Protocol):
    name: str

    async def store(
        self, artifact: Path, manifest: Manifest, key: str, transfer: Transfer
    ) -> Stored:
        """Store the artifact under `key` (deterministic per workflow run) and its manifest
        beside it. A retry replaces or resumes, never duplicates; nothing is visible as complete
        before the manifest is."""
        ...

    async def fetch(self, location: str, destination: Path, transfer: Transfer) -> Fetched:
        """Write the artifact at `location` to `destination` and return its stored manifest.
        Verification of signature and checksums is the caller's (backup.download)."""
        ...

    async def abort_incomplete(self, key: str) -> int:
        """Abort unfinished uploads under `key` (after failure or cancellation); returns how
        many were aborted."""
        ...

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        """The project's backups under `backups/<project_id>/`, newest first, including
        orphans (no manifest: `has_manifest` False). Raises ListingNotSupported where the
        backend can not list."""
        ...

    async def delete_backup(self, backup: StoredBackup) -> None:
        """Delete a listed backup's artifact, manifest and signature. Idempotent: what is
        already gone is not an error."""
        ...
