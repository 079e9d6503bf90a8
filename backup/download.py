"""Fetch an artifact by its location and prove it is the one that was backed up.

What restore uses: the manifest's signature is checked when a verify key is configured, then the
artifact's size and SHA-256 against the manifest; the artifact gets its final name only when all
of it holds, and any mismatch leaves nothing behind and raises IntegrityError.
"""

from __future__ import annotations

from pathlib import Path

from backup.errors import IntegrityError
from backup.files import sha256_of
from backup.manifest import Manifest
from backup.settings import Settings
from backup.signing import ManifestSigner, load_verify_key, verify_manifest
from backup.storage import Transfer, storage_for


async def download(
    location: str, destination: Path, settings: Settings, transfer: Transfer | None = None
) -> Manifest:
    partial = destination.with_name(destination.name + ".partial")
    try:
        fetched = await storage_for(location, settings).fetch(
            location, partial, transfer or Transfer()
        )
        verify_key = verify_key_pem(settings)
        if verify_key is not None:
            verify_manifest(load_verify_key(*verify_key), fetched.raw, fetched.signature, location)
        verify_against(partial, fetched.manifest, location)
        partial.replace(destination)
        return fetched.manifest
    finally:
        partial.unlink(missing_ok=True)


def verify_key_pem(settings: Settings) -> tuple[bytes, str] | None:
    """The public key to verify manifests with, and where it came from."""
    if settings.manifest_verify_key_file is not None:
        path = settings.manifest_verify_key_file
        return path.read_bytes(), f"MANIFEST_VERIFY_KEY_FILE {path}"
    if settings.manifest_signing_key_file is not None:
        signer = ManifestSigner(settings.manifest_signing_key_file)
        return signer.public_pem(), "MANIFEST_SIGNING_KEY_FILE"
    return None


def verify_against(path: Path, manifest: Manifest, location: str) -> None:
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise IntegrityError(
            f"{location}: downloaded {size} bytes, the manifest says {manifest.size_bytes}"
        )
    if sha256_of(path) != manifest.sha256:
        raise IntegrityError(f"{location}: SHA-256 does not match the manifest; refusing it")
