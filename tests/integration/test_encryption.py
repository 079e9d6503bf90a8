"""Encryption at rest: the dump is encrypted in the stream to age X25519 recipients, decrypts with
the standard `age` tool, restores, never holds plaintext, and fails closed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pyrage
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from backup import age_writer
from backup.encryption import decrypt_file
from backup.errors import BackupTooLarge, ConfigurationError, EncryptionFailed
from backup.models import Compression, DumpFormat
from backup.pgdump import pg_bin_dir
from backup.restore import restore, row_counts
from backup.settings import Settings
from devstack.postgres import PostgresServer
from tests.dumps import dump

MARKER = "PLAINTEXT-MARKER-7f3a"


@pytest.fixture(scope="module")
def secretive(postgres: PostgresServer) -> str:
    """A tenant with a recognisable row, to prove the stored bytes never contain it."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS secretive CASCADE")
        conn.execute("CREATE SCHEMA secretive")
        conn.execute("CREATE TABLE secretive.notes (id int primary key, body text)")
        conn.execute(
            "INSERT INTO secretive.notes SELECT g, %s || g FROM generate_series(1, 2000) g",
            (MARKER,),
        )
    return "secretive"


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An age identity made by the real `age-keygen`, and its public key."""
    keygen = shutil.which("age-keygen")
    assert keygen, "the age CLI is required (make test installs Debian's `age`)"
    path = tmp_path_factory.mktemp("keys") / "age.key"
    subprocess.run([keygen, "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run([keygen, "-y", str(path)], check=True, capture_output=True, text=True)
    return path, public.stdout.strip()


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [(DumpFormat.CUSTOM, Compression.ZSTD), (DumpFormat.SQL, Compression.NONE)],
)
def test_encrypted_backup_decrypts_with_the_age_cli_and_restores(
    postgres: PostgresServer,
    scratch_db: str,
    tmp_path: Path,
    secretive: str,
    identity: tuple[Path, str],
    fmt: DumpFormat,
    compression: Compression,
) -> None:
    key_file, public = identity
    outcome = dump(postgres.url(), secretive, tmp_path, fmt, compression, recipients=[public])

    stored = outcome.artifact_path.read_bytes()
    assert outcome.artifact_path.name.endswith(".age")
    assert stored.startswith(b"age-encryption.org/v1")
    assert MARKER.encode() not in stored
    assert outcome.manifest.encryption == "age-x25519" and outcome.manifest.recipients == [public]

    plain = tmp_path / "decrypted"
    age = shutil.which("age")
    assert age
    subprocess.run(
        [age, "-d", "-i", str(key_file), "-o", str(plain), str(outcome.artifact_path)], check=True
    )
    restore(plain, fmt, compression, scratch_db, pg_bin_dir())
    assert (
        row_counts(scratch_db, secretive)
        == row_counts(postgres.url(), secretive)
        == {"notes": 2000}
    )


def test_decrypt_file_matches_the_age_cli(
    postgres: PostgresServer, tmp_path: Path, secretive: str, identity: tuple[Path, str]
) -> None:
    key_file, public = identity
    outcome = dump(postgres.url(), secretive, tmp_path, recipients=[public])
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    decrypt_file(outcome.artifact_path, ours, key_file)
    subprocess.run(
        ["age", "-d", "-i", str(key_file), "-o", str(theirs), str(outcome.artifact_path)],
        check=True,
    )
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame: the compressed dump


def test_a_bad_recipient_fails_closed_before_dumping(
    postgres: PostgresServer, tmp_path: Path, secretive: str
) -> None:
    with pytest.raises(ConfigurationError, match="age1"):
        dump(postgres.url(), secretive, tmp_path, recipients=["age1notakey"])
    assert list(tmp_path.iterdir()) == []


def test_an_encryption_failure_stores_nothing(
    postgres: PostgresServer,
    tmp_path: Path,
    secretive: str,
    identity: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        """The payload's cipher fails once the dump streams (the header's key wrap works)."""

        made = 0

        def __init__(self, key: bytes) -> None:
            Broken.made += 1
            self._cipher, self._payload = ChaCha20Poly1305(key), Broken.made == 2

        def encrypt(self, nonce: bytes, data: Any, associated_data: Any) -> bytes:
            if self._payload:
                raise RuntimeError("simulated failure")
            return self._cipher.encrypt(nonce, data, associated_data)

    monkeypatch.setattr(age_writer, "ChaCha20Poly1305", Broken)
    with pytest.raises(EncryptionFailed, match="nothing was stored"):
        dump(postgres.url(), secretive, tmp_path, recipients=[identity[1]])
    assert list(tmp_path.iterdir()) == []


def test_the_size_cap_holds_for_encrypted_dumps(
    postgres: PostgresServer, tmp_path: Path, identity: tuple[Path, str]
) -> None:
    with pytest.raises(BackupTooLarge):
        dump(
            postgres.url(),
            "umbrella",
            tmp_path,
            compression=Compression.NONE,
            max_bytes=256 * 1024,
            recipients=[identity[1]],
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENCRYPTION_RECIPIENTS", " , "),
        ("ENCRYPTION_PROJECT_RECIPIENTS", '{"acme": []}'),
        ("ENCRYPTION_PROJECT_RECIPIENTS", '{"acme": [" "]}'),
    ],
)
def test_configuration_that_asks_for_encryption_never_means_off(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A value that names no key must stop the worker, not quietly store plaintext."""
    monkeypatch.setenv("ENCRYPTION_RECIPIENTS", "age1placeholder")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"{variable}.*lists no key"):
        Settings.from_environment()


def test_a_project_with_its_own_recipients_uses_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_RECIPIENTS", "age1deployment")
    monkeypatch.setenv("ENCRYPTION_PROJECT_RECIPIENTS", '{"acme": ["age1a", "age1b"]}')
    settings = Settings.from_environment()
    assert settings.recipients_for("acme") == ["age1a", "age1b"]
    assert settings.recipients_for("globex") == ["age1deployment"]


def test_several_recipients_each_decrypt(
    postgres: PostgresServer, tmp_path: Path, secretive: str, identity: tuple[Path, str]
) -> None:
    second = pyrage.x25519.Identity.generate()
    outcome = dump(
        postgres.url(), secretive, tmp_path, recipients=[identity[1], str(second.to_public())]
    )
    stored = outcome.artifact_path.read_bytes()
    assert pyrage.decrypt(stored, [second]) == pyrage.decrypt(
        stored, [pyrage.x25519.Identity.from_str(identity[0].read_text().splitlines()[-1])]
    )
