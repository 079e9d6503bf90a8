"""Restore an artifact into a database: decompress, then pg_restore (or psql for SQL).

The seed of RestoreBackupWorkflow; today the demo and the tests use it to prove that every
artifact restores and holds exactly its tenant's tables and rows.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import psycopg
import zstandard

from backup.catalog import exact_row_counts, schema_tables
from backup.errors import BackupError
from backup.models import Compression, DumpFormat
from backup.pgconn import client_connection


class RestoreFailed(BackupError):
    pass


def decompress(artifact: Path, compression: Compression, destination: Path) -> None:
    with artifact.open("rb") as src, destination.open("wb") as dst:
        if compression is Compression.ZSTD:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        elif compression is Compression.GZIP:
            with gzip.GzipFile(fileobj=src) as unzipped:
                shutil.copyfileobj(unzipped, dst)
        else:
            shutil.copyfileobj(src, dst)


def restore(
    artifact: Path, fmt: DumpFormat, compression: Compression, database_url: str, bin_dir: Path
) -> None:
    """Restore into the database at `database_url` (the schema keeps its name)."""
    with tempfile.TemporaryDirectory(prefix="restore-") as scratch:
        plain = Path(scratch) / "artifact"
        decompress(artifact, compression, plain)
        if fmt is DumpFormat.DIRECTORY:
            with tarfile.open(plain) as tar:
                tar.extractall(scratch, filter="data")
            plain = Path(scratch) / "dump"  # the artifact holds the directory as dump/
        with client_connection(database_url) as client:
            if fmt is DumpFormat.SQL:
                args = [str(bin_dir / "psql"), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1",
                        "--file", str(plain), f"--dbname={client.conninfo}"]  # fmt: skip
            else:
                args = [str(bin_dir / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                        f"--dbname={client.conninfo}", str(plain)]  # fmt: skip
            done = subprocess.run(
                args,
                capture_output=True,
                text=True,
                env={**os.environ, **client.env},
                pass_fds=client.pass_fds,
            )
        if done.returncode != 0:
            raise RestoreFailed(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def row_counts(database_url: str, schema: str) -> dict[str, int]:
    """Exact row count of every table of the schema, as the manifest records them."""
    with psycopg.connect(database_url) as conn:
        return exact_row_counts(conn, schema, schema_tables(conn, schema))
