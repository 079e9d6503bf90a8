"""Client-side encryption in the dump stream, in the age format, to X25519 recipients (written
by backup.age_writer; pyrage decrypts).

Workers hold only public keys (`age1...`), so a worker can never read an old backup, and a user
decrypts with the standard `age` tool: `age -d -i key.txt backup.dump.zst.age | zstd -d`.
Encryption fails closed: a bad recipient or any library error stops the dump and nothing is
stored; configuration that asks for encryption never yields a plaintext artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from backup.age_writer import AgeWriter, x25519_recipient
from backup.compression import CappedHashingWriter
from backup.errors import BackupError, ConfigurationError, EncryptionFailed

T = TypeVar("T")


def parse_recipients(keys: Iterable[str]) -> list[object]:
    """age X25519 recipients (their public keys) from `age1...` strings; a bad key is a
    configuration error. Checked by pyrage too, which decrypts."""
    try:
        import pyrage
    except ImportError as err:  # fail closed: never fall back to plaintext
        raise ConfigurationError(
            "encryption is configured but pyrage is not installed: pip install pyrage"
        ) from err
    recipients: list[object] = []
    for key in keys:
        try:
            pyrage.x25519.Recipient.from_str(key.strip())
            recipients.append(x25519_recipient(key))
        except (pyrage.RecipientError, ValueError) as err:
            raise ConfigurationError(
                f"age recipient {key.strip()[:12]}... is not valid ({err}): it must be an X25519 "
                "public key starting with age1, as printed by `age-keygen` or `starter.py keys`"
            ) from None
    if not recipients:
        raise ConfigurationError("encryption is configured with no recipients")
    return recipients


class AgeEncryptor:
    """A write-only stream that encrypts into a CappedHashingWriter, in the dump's own thread
    (backup.age_writer: no pipe, no thread); memory stays constant whatever the size."""

    def __init__(self, target: CappedHashingWriter, recipients: list[object]) -> None:
        keys = [key for key in recipients if isinstance(key, X25519PublicKey)]
        if not keys or len(keys) != len(recipients):
            raise ConfigurationError("age encryption needs X25519 recipients (parse_recipients)")
        self._target = _RecordingWriter(target)
        self._writer = self._guarded(lambda: AgeWriter(self._target, keys))

    def write(self, data: bytes, /) -> int:
        return self._guarded(lambda: self._writer.write(data))

    def flush(self) -> None:
        """Data is flushed on close; gzip calls this on its way out."""

    def abort(self) -> None:
        """After a failure elsewhere: nothing runs beside the dump; the output is discarded
        with the file."""

    def close(self) -> None:
        self._guarded(self._writer.close)

    def _guarded(self, step: Callable[[], T]) -> T:
        try:
            return step()
        except Exception as err:
            raise self._failure(err) from None

    def _failure(self, err: BaseException) -> BaseException:
        if self._target.error is not None:  # BackupTooLarge, a full disk, a failed part: as is
            return self._target.error
        if isinstance(err, (BackupError, OSError)):
            return err
        return EncryptionFailed(
            f"age encryption failed: {err!r}; nothing was stored. Check that ENCRYPTION_RECIPIENTS "
            "holds age1... keys, then run it again"
        )


class _RecordingWriter:
    """Keeps the exception its target raised: that one is reported as it is, not as a failure
    of the encryption."""

    def __init__(self, target: CappedHashingWriter) -> None:
        self._target = target
        self.error: BaseException | None = None

    def write(self, data: bytes, /) -> int:
        try:
            return self._target.write(data)
        except BaseException as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._target.flush()


def decrypt_file(source: Path, destination: Path, identity_file: Path) -> None:
    """Decrypt with an age identity file (as written by age-keygen or `starter.py keys`)."""
    import pyrage

    identities = [
        pyrage.x25519.Identity.from_str(line.strip())
        for line in identity_file.read_text().splitlines()
        if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if not identities:
        raise ConfigurationError(f"{identity_file} holds no AGE-SECRET-KEY line")
    with source.open("rb") as src, destination.open("wb") as dst:
        try:
            pyrage.decrypt_io(src, dst, identities)
        except pyrage.DecryptError as err:
            raise ConfigurationError(
                f"cannot decrypt {source.name} with {identity_file}: {err}"
            ) from None


def readable_artifact(artifact: Path, encryption: str | None, identity_file: Path | None) -> Path:
    """The artifact itself, or its decryption beside it (`<name>.plain`) when it is encrypted."""
    if not encryption:
        return artifact
    if identity_file is None:
        raise ConfigurationError(
            "the backup is encrypted: set ENCRYPTION_IDENTITY_FILE on the worker that restores it"
        )
    plain = artifact.with_name(artifact.name + ".plain")
    decrypt_file(artifact, plain, identity_file)
    return plain
