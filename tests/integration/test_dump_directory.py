"""Directory artifacts: the new ones (a plain tar of files pg_dump compressed) and the ones
earlier versions stored (a zstd or gzip compressed tar of uncompressed files) both restore,
whatever compression the caller passes, and an encrypted one holds no readable dump."""

from __future__ import annotations

import gzip
import os
import subprocess
import tarfile
from pathlib import Path

import psycopg
import pytest
import zstandard
from psycopg import sql

from backup.encryption import decrypt_file
from backup.keys import generate_keys
from backup.manifest import Manifest
from backup.models import Compression, DumpFormat
from backup.pgconn import client_connection
from backup.pgdump import pg_bin_dir, pg_dump_args
from backup.restore import check_by_restore, restore, restore_as, row_counts
from devstack.postgres import PostgresServer
from tests.dumps import dump


def previous_version_artifact(url: str, schema: str, folder: Path, outer: Compression) -> Path:
    """A directory artifact as the pipeline wrote it before pg_dump compressed the files:
    pg_dump -Fd --compress=0, tarred as dump/, then compressed as a whole."""
    staging = folder / "staging"
    with client_connection(url) as client:
        args = pg_dump_args(
            pg_bin_dir(),
            conninfo=client.conninfo,
            schema=schema,
            fmt=DumpFormat.DIRECTORY,
            output_dir=staging,
            jobs=2,
            compress="0",
        )
        env = {**os.environ, **client.env}
        subprocess.run(args, check=True, env=env, pass_fds=client.pass_fds)
    tar_path = folder / "b.dir.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(staging, arcname="dump")
    if outer is Compression.NONE:
        return tar_path
    artifact = folder / ("b.dir.tar" + {Compression.ZSTD: ".zst", Compression.GZIP: ".gz"}[outer])
    with tar_path.open("rb") as src, artifact.open("wb") as dst:
        if outer is Compression.ZSTD:
            zstandard.ZstdCompressor().copy_stream(src, dst)
        else:
            with gzip.GzipFile(fileobj=dst, mode="wb") as zipped:
                zipped.write(src.read())
    return artifact


@pytest.mark.parametrize("outer", list(Compression))
def test_a_directory_artifact_of_the_previous_version_still_restores(
    postgres: PostgresServer, tmp_path: Path, outer: Compression
) -> None:
    source = row_counts(postgres.url(), "acme")
    artifact = previous_version_artifact(postgres.url(), "acme", tmp_path, outer)
    # Its manifest, as the previous version wrote it: the outer compression.
    manifest = dump(postgres.url(), "acme", tmp_path / "new", DumpFormat.DIRECTORY).manifest
    old = manifest.model_copy(update={"compression": outer, "artifact": artifact.name})

    scratch = f"dir_compat_{outer.value}"
    check = check_by_restore(artifact, old, postgres.url(), scratch, pg_bin_dir())
    assert check.verified, check
    copy = f"acme_dir_compat_{outer.value}"
    _drop_schema(postgres.url(), copy)
    try:
        assert restore_as(artifact, old, postgres.url(), copy, pg_bin_dir()).row_counts == source
    finally:
        _drop_schema(postgres.url(), copy)


@pytest.mark.parametrize("declared", list(Compression))
def test_a_new_directory_artifact_restores_whatever_compression_the_caller_passes(
    postgres: PostgresServer, scratch_db: str, tmp_path: Path, declared: Compression
) -> None:
    """Callers that pass the compression the backup was asked for (ExportResult.compression)
    rather than the manifest's still restore: the tar is unpacked by what it is."""
    outcome = dump(postgres.url(), "acme", tmp_path, DumpFormat.DIRECTORY, Compression.ZSTD)
    assert outcome.artifact_path.name == "b.dir.tar"
    restore(outcome.artifact_path, DumpFormat.DIRECTORY, declared, scratch_db, pg_bin_dir(), 2)
    assert row_counts(scratch_db, "acme") == outcome.manifest.row_counts
    check = check_by_restore(
        outcome.artifact_path, outcome.manifest, postgres.url(), "dir_new_check", pg_bin_dir()
    )
    assert check.verified, check


def test_an_encrypted_directory_artifact_holds_no_readable_dump(
    postgres: PostgresServer, scratch_db: str, tmp_path: Path
) -> None:
    keys = generate_keys(tmp_path / "keys")
    out = tmp_path / "spool"
    outcome = dump(
        postgres.url(),
        "acme",
        out,
        DumpFormat.DIRECTORY,
        Compression.ZSTD,
        recipients=[keys.recipient],
    )
    assert outcome.artifact_path.name == "b.dir.tar.age"
    assert sorted(p.name for p in out.iterdir()) == ["b.dir.tar.age", "b.dir.tar.age.manifest.json"]
    stored = outcome.artifact_path.read_bytes()
    assert stored.startswith(b"age-encryption.org/v1")
    assert b"toc.dat" not in stored and b"CREATE TABLE" not in stored
    plain = tmp_path / "plain.tar"
    decrypt_file(outcome.artifact_path, plain, keys.identity_file)
    restore(plain, DumpFormat.DIRECTORY, outcome.manifest.compression, scratch_db, pg_bin_dir())
    assert row_counts(scratch_db, "acme") == outcome.manifest.row_counts
    assert Manifest.read(out / "b.dir.tar.age.manifest.json").encryption == "age-x25519"


def _drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
