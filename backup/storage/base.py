"""The storage interface every backend (local, S3, Telegram) implements.

A backend stores an artifact together with its manifest and returns where they are; it can
fetch them back by that location. Uploads are resumable: a backend reports its state through
`Transfer.checkpoint` and receives it again in `Transfer.resume` when an attempt is retried.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from backup.layout import StoredBackup
from backup.manifest import Manifest


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

    async def abort_abandoned_uploads(
        self, older_than: timedelta, now: datetime | None = None
    ) -> int:
        """Abort this deployment's unfinished uploads begun more than `older_than` before `now`
        (runs whose cleanup could not reach the store); returns how many. Nothing outside the
        deployment's `layout.ROOT` is touched. A no-op where nothing is left half-uploaded."""
        ...

    async def list_backups(self, project_id: str) -> list[StoredBackup]:
        """The project's backups under `layout.project_prefix(project_id)`, newest first, including
        orphans (no manifest: `has_manifest` False). Raises ListingNotSupported where the
        backend can not list."""
        ...

    async def delete_backup(self, backup: StoredBackup) -> None:
        """Delete a listed backup's artifact, manifest and signature. Idempotent: what is
        already gone is not an error."""
        ...


class PartReader(io.RawIOBase):
    """A seekable read-only view of `length` bytes of a file from `offset`: an upload body that
    streams from the page cache instead of sitting in memory (S3 parts, Telegram documents).
    Positions are relative to the part, so botocore's rewind on a retry (seek(0)) and the length
    probes of botocore and httpx (seek(0, 2); `fileno` is unsupported on purpose) work."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._length = length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._length - self._pos)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(0, base + offset), self._length)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class MemoryReader(io.RawIOBase):
    """A part in memory as a seekable upload body that copies nothing up front (as PartReader
    for a file range: botocore rewinds it on a retry and probes its length)."""

    def __init__(self, data: memoryview) -> None:
        super().__init__()
        self._data, self._pos = data, 0

    def __len__(self) -> int:
        return len(self._data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = min(max(0, base + offset), len(self._data))
        return self._pos

    def tell(self) -> int:
        return self._pos


def hash_range(path: Path, offset: int, length: int) -> tuple[int, bytes, bytes]:
    """Length actually read, MD5 and SHA-256 of `length` bytes from `offset`, read in 1 MiB
    chunks: never the whole part in memory (whole 16 MiB parts, several at once, kept ~90 MB in
    malloc's arenas)."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with PartReader(path, offset, length) as part:
        while chunk := part.read(1024 * 1024):
            md5.update(chunk)
            sha256.update(chunk)
        return part.tell(), md5.digest(), sha256.digest()
