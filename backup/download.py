"""Fetch an artifact by its location and prove it is the one that was backed up.

What restore uses: the artifact lands under its final name only after its size and SHA-256
match the manifest; a mismatch leaves nothing behind and raises IntegrityError.
"""

from __future__ import annotations

from pathlib import Path

from backup.errors import IntegrityError
from backup.files import sha256_of
from backup.manifest import Manifest
from backup.settings import Settings
from backup.storage import Transfer, storage_for


async def download(
    location: str, destination: Path, settings: Settings, transfer: Transfer | None = None
) -> Manifest:
    partial = destination.with_name(destination.name + ".partial")
    try:
        manifest = await storage_for(location, settings).fetch(
            location, partial, transfer or Transfer()
        )
        verify_against(partial, manifest, location)
        partial.replace(destination)
        return manifest
    finally:
        partial.unlink(missing_ok=True)


def verify_against(path: Path, manifest: Manifest, location: str) -> None:
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise IntegrityError(
            f"{location}: downloaded {size} bytes, the manifest says {manifest.size_bytes}"
        )
    if sha256_of(path) != manifest.sha256:
        raise IntegrityError(f"{location}: SHA-256 does not match the manifest; refusing it")
