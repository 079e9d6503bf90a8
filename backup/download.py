"""Fetch an artifact by its location and prove it is the one that was backed up.

What restore uses: the manifest's signature is checked when a verify key is available (passed in,
or configured), then the artifact's size and SHA-256 against the manifest; the artifact gets its
final name only when all of it holds, and any mismatch leaves nothing behind and raises
IntegrityError. With no key at all the signature is not checked: callers that report on a download
ask verify_key_pem first and say so (starter.py download).
"""

from __future__ import annotations

from pathlib import Path

from backup.errors import IntegrityError
from backup.files import sha256_of
from backup.layout import PARTIAL_SUFFIX
from backup.manifest import Manifest
from backup.settings import Settings
from backup.signing import ManifestSigner, load_verify_key, verify_manifest
from backup.storage import Transfer, storage_for


async def download(
    location: str,
    destination: Path,
    settings: Settings,
    transfer: Transfer | None = None,
    verify_key_file: Path | None = None,
) -> Manifest:
    """verify_key_file, when given, is the public key to check the signature with, whatever the
    settings say."""
    partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
    try:
        fetched = await storage_for(location, settings).fetch(
            location, partial, transfer or Transfer()
        )
        verify_key = verify_key_pem(settings, verify_key_file)
        if verify_key is not None:
            verify_manifest(load_verify_key(*verify_key), fetched.raw, fetched.signature, location)
        verify_against(partial, fetched.manifest, location)
        partial.replace(destination)
        return fetched.manifest
    finally:
        partial.unlink(missing_ok=True)


def verify_key_pem(settings: Settings, key_file: Path | None = None) -> tuple[bytes, str] | None:
    """The public key to verify manifests with, and where it came from (for messages); None when
    neither key_file nor a key setting is there."""
    if key_file is not None:
        return key_file.read_bytes(), str(key_file)
    if settings.manifest_verify_key_file is not None:
        path = settings.manifest_verify_key_file
        return path.read_bytes(), f"MANIFEST_VERIFY_KEY_FILE {path}"
    if settings.manifest_signing_key_file is not None:
        path = settings.manifest_signing_key_file
        return ManifestSigner(path).public_pem(), f"MANIFEST_SIGNING_KEY_FILE {path}"
    return None


def verify_against(path: Path, manifest: Manifest, location: str) -> None:
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise IntegrityError(
            f"{location}: downloaded {size} bytes, the manifest says {manifest.size_bytes}"
        )
    if sha256_of(path) != manifest.sha256:
        raise IntegrityError(f"{location}: SHA-256 does not match the manifest; refusing it")
