"""The size cap holds under age encryption: an encrypted artifact that passes BACKUP_MAX_BYTES
fails with BackupTooLarge, however little it writes after the cap (the last chunk)."""

from __future__ import annotations

import io
import os

import pytest

from backup.compression import CappedHashingWriter
from backup.encryption import AgeEncryptor, parse_recipients
from backup.errors import BackupTooLarge

# A public key only: nothing here decrypts.
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


@pytest.mark.parametrize("size", [100, 2000, 70_000, 300_000])
def test_an_encrypted_artifact_over_the_cap_fails(size: int) -> None:
    sink = CappedHashingWriter(io.BytesIO(), max_bytes=64)
    with pytest.raises(BackupTooLarge):  # at the header already, or with the last chunk
        encryptor = AgeEncryptor(sink, parse_recipients([RECIPIENT]))
        encryptor.write(os.urandom(size))
        encryptor.close()


def test_an_encrypted_artifact_under_the_cap_is_written_whole() -> None:
    out = io.BytesIO()
    sink = CappedHashingWriter(out, max_bytes=10_000)
    encryptor = AgeEncryptor(sink, parse_recipients([RECIPIENT]))
    encryptor.write(b"x" * 1000)
    encryptor.close()
    assert sink.bytes_written == len(out.getvalue()) > 1000
    assert out.getvalue().startswith(b"age-encryption.org/v1")
