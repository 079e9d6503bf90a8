"""Signed manifests: an Ed25519 signature over the exact bytes of the stored manifest.

The workers hold the private key (MANIFEST_SIGNING_KEY_FILE); download and restore hold the
public one (MANIFEST_VERIFY_KEY_FILE) and refuse a manifest whose signature does not verify.
The signature is stored beside the manifest as raw 64 bytes, so standard tools verify it:
`openssl pkeyutl -verify -pubin -inkey signing.pub.pem -rawin -in M.json -sigfile M.json.sig`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backup.errors import ConfigurationError, IntegrityError
from backup.layout import SIGNATURE_SUFFIX  # noqa: F401  (kept importable from here)


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) for a new deployment."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class ManifestSigner:
    def __init__(self, key_file: Path) -> None:
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError) as err:
            raise ConfigurationError(
                f"MANIFEST_SIGNING_KEY_FILE {key_file}: not a readable PEM private key ({err})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"MANIFEST_SIGNING_KEY_FILE {key_file}: not an Ed25519 key")
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def load_verify_key(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise ConfigurationError(f"{source}: not a PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{source}: not an Ed25519 public key")
    return key


def verify_manifest(key: Ed25519PublicKey, raw: bytes, signature: bytes | None, where: str) -> None:
    if signature is None:
        raise IntegrityError(f"{where}: the manifest is not signed; refusing it")
    try:
        key.verify(signature, raw)
    except InvalidSignature:
        raise IntegrityError(
            f"{where}: the manifest signature does not verify: it was altered or signed by "
            "another key; refusing it"
        ) from None
