"""Client-side encryption in the dump stream, in the age format (pyrage), to X25519 recipients.

Workers hold only public keys (`age1...`), so a worker can never read an old backup, and a user
decrypts with the standard `age` tool: `age -d -i key.txt backup.dump.zst.age | zstd -d`.
Encryption fails closed: a bad recipient or any library error stops the dump and nothing is
stored; configuration that asks for encryption never yields a plaintext artifact.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from backup.compression import CappedHashingWriter
from backup.errors import BackupError, ConfigurationError, EncryptionFailed


def parse_recipients(keys: Iterable[str]) -> list[object]:
    """age X25519 recipients from their public keys; a bad key is a configuration error."""
    try:
        import pyrage
    except ImportError as err:  # fail closed: never fall back to plaintext
        raise ConfigurationError(
            "encryption is configured but pyrage is not installed: pip install pyrage"
        ) from err
    recipients = []
    for key in keys:
        try:
            recipients.append(pyrage.x25519.Recipient.from_str(key.strip()))
        except pyrage.RecipientError as err:
            raise ConfigurationError(
                f"age recipient {key.strip()[:12]}... is not valid ({err}): it must be an X25519 "
                "public key starting with age1, as printed by `age-keygen` or `starter.py keys`"
            ) from None
    if not recipients:
        raise ConfigurationError("encryption is configured with no recipients")
    return recipients


class AgeEncryptor:
    """A write-only stream that encrypts into a CappedHashingWriter.

    pyrage encrypts from a reader, so the plaintext goes through a pipe to a thread running
    `encrypt_io`; memory stays constant whatever the size."""

    def __init__(self, target: CappedHashingWriter, recipients: list[object]) -> None:
        import pyrage

        self._target = _RecordingWriter(target)
        read_fd, write_fd = os.pipe()
        self._reader: BinaryIO = os.fdopen(read_fd, "rb")
        self._writer: BinaryIO = os.fdopen(write_fd, "wb")
        self._error: BaseException | None = None

        def run() -> None:
            try:
                pyrage.encrypt_io(self._reader, self._target, recipients)
            except BaseException as err:  # reported to the writing side in close()/write()
                self._error = err
            finally:
                self._reader.close()  # a writer blocked on a full pipe gets BrokenPipeError

        self._thread = threading.Thread(target=run, name="age-encrypt", daemon=True)
        self._thread.start()

    def write(self, data: bytes, /) -> int:
        try:
            return self._writer.write(data)
        except BrokenPipeError:
            self._thread.join()
            raise self._failure() from None

    def flush(self) -> None:
        """Data is flushed on close; gzip calls this on its way out."""

    def abort(self) -> None:
        """After a failure elsewhere: stop the thread; its output is discarded with the file."""
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._writer.close()
        self._thread.join()
        # pyrage may end without an error although the target refused the last write (the
        # size cap passed while it flushed its final chunk): the recorded error counts too.
        if self._error is not None or self._target.error is not None:
            raise self._failure()

    def _failure(self) -> BaseException:
        # pyrage wraps what the target raised (BackupTooLarge, a full disk): report the original.
        err = self._target.error or self._error
        if isinstance(err, (BackupError, OSError)):
            return err
        return EncryptionFailed(
            f"age encryption failed: {err!r}; nothing was stored. Check that pyrage imports on "
            "this worker and that ENCRYPTION_RECIPIENTS holds age1... keys, then run it again"
        )


class _RecordingWriter:
    """Keeps the exception its target raised, which pyrage would otherwise turn into a string."""

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
