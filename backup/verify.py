"""Integrity of a spooled artifact before it leaves the host."""

from __future__ import annotations

from pathlib import Path

from backup.errors import ArtifactCorrupted, BackupTooLarge
from backup.files import sha256_of
from backup.manifest import Manifest


def spooled_manifest(artifact: Path, manifest_path: Path) -> Manifest:
    """The manifest of a spooled artifact; ArtifactCorrupted (dump again) when either is gone."""
    if not artifact.exists() or not manifest_path.exists():
        raise ArtifactCorrupted(
            f"spooled artifact {artifact.name} or its manifest is missing; the dump is redone"
        )
    return Manifest.read(manifest_path)


def verify_spooled(artifact: Path, manifest_path: Path, max_bytes: int) -> Manifest:
    """The artifact exists, is within the cap, and matches the size and SHA-256 its manifest
    recorded while dumping. Raises ArtifactCorrupted when the dump has to be redone."""
    manifest = spooled_manifest(artifact, manifest_path)
    size = artifact.stat().st_size
    if size > max_bytes:
        raise BackupTooLarge(
            f"the backup is {size} bytes, more than BACKUP_MAX_BYTES ({max_bytes}); raise "
            "BACKUP_MAX_BYTES or compress the backup"
        )
    if size != manifest.size_bytes:
        raise ArtifactCorrupted(
            f"spooled artifact {artifact.name} is {size} bytes, the dump wrote "
            f"{manifest.size_bytes}; the dump is redone"
        )
    if sha256_of(artifact) != manifest.sha256:
        raise ArtifactCorrupted(
            f"spooled artifact {artifact.name} does not match the SHA-256 recorded while "
            "dumping; the dump is redone"
        )
    return manifest
