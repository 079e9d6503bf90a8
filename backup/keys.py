"""Keys for a deployment: an age identity (its public recipient goes to the workers) and an
Ed25519 key pair that signs manifests. Written with private files 0600; never overwritten."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyrage

from backup.errors import ConfigurationError
from backup.signing import generate_keypair


@dataclass(frozen=True)
class DeploymentKeys:
    folder: Path

    @property
    def identity_file(self) -> Path:
        return self.folder / "age-identity.txt"

    @property
    def recipient_file(self) -> Path:
        return self.folder / "age-recipient.txt"

    @property
    def signing_key_file(self) -> Path:
        return self.folder / "signing.pem"

    @property
    def verify_key_file(self) -> Path:
        return self.folder / "signing.pub.pem"

    @property
    def recipient(self) -> str:
        return self.recipient_file.read_text().strip()

    def exist(self) -> bool:
        return all(
            p.exists()
            for p in (
                self.identity_file,
                self.recipient_file,
                self.signing_key_file,
                self.verify_key_file,
            )
        )


def generate_keys(folder: Path) -> DeploymentKeys:
    keys = DeploymentKeys(folder)
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    private, public = generate_keypair()
    files = {
        keys.identity_file: (f"# public key: {recipient}\n{identity}\n".encode(), 0o600),
        keys.recipient_file: (f"{recipient}\n".encode(), 0o644),
        keys.signing_key_file: (private, 0o600),
        keys.verify_key_file: (public, 0o644),
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise ConfigurationError(f"refusing to overwrite existing keys: {', '.join(existing)}")
    folder.mkdir(parents=True, exist_ok=True)
    for path, (data, mode) in files.items():
        path.touch(mode=mode)
        path.write_bytes(data)
    return keys
