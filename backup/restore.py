"""Restore an artifact: decompress, then pg_restore (or psql for SQL), either as it is into a
database (`restore`) or under a new schema name beside the original (`restore_as`)."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import zstandard
from psycopg import sql
from psycopg.conninfo import make_conninfo

from backup.catalog import exact_row_counts, schema_tables
from backup.errors import BackupError
from backup.manifest import Manifest
from backup.models import Compression, DumpFormat, RestoreCheck
from backup.pgconn import client_connection
from backup.pgdump import exact_schema_pattern


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


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def tar_compression(artifact: Path) -> Compression:
    """The compression around a directory artifact's tar. Older artifacts are a zstd or gzip
    compressed tar of uncompressed files; newer ones a plain tar of files pg_dump compressed
    (their manifest names that compression). The first bytes tell: a tar starts with a name."""
    with artifact.open("rb") as file:
        head = file.read(4)
    if head == ZSTD_MAGIC:
        return Compression.ZSTD
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


def _unpack_directory(artifact: Path, scratch: Path) -> Path:
    """Extract a directory artifact into `scratch`; returns the dump directory in it."""
    outer = tar_compression(artifact)
    tar_path = artifact
    if outer is not Compression.NONE:
        tar_path = scratch / "artifact.tar"
        decompress(artifact, outer, tar_path)
    with tarfile.open(tar_path) as tar:
        tar.extractall(scratch, filter="data")
    if tar_path != artifact:
        tar_path.unlink()
    return scratch / "dump"  # the artifact holds the directory as dump/


def restore(
    artifact: Path,
    fmt: DumpFormat,
    compression: Compression,
    database_url: str,
    bin_dir: Path,
    jobs: int = 1,
) -> None:
    """Restore into the database at `database_url` (the schema keeps its name); custom and
    directory formats restore with `jobs` parallel workers. A directory artifact is unpacked
    by what it is, whatever `compression` says (see tar_compression)."""
    with tempfile.TemporaryDirectory(prefix="restore-") as scratch:
        if fmt is DumpFormat.DIRECTORY:
            plain = _unpack_directory(artifact, Path(scratch))
        else:
            plain = Path(scratch) / "artifact"
            decompress(artifact, compression, plain)
        with client_connection(database_url) as client:
            if fmt is DumpFormat.SQL:
                args = [str(bin_dir / "psql"), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1",
                        "--file", str(plain), f"--dbname={client.conninfo}"]  # fmt: skip
            else:
                args = [str(bin_dir / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                        f"--dbname={client.conninfo}", str(plain)]  # fmt: skip
                if jobs > 1 and fmt in (DumpFormat.CUSTOM, DumpFormat.DIRECTORY):
                    args.insert(1, f"--jobs={jobs}")
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


class SchemaExists(BackupError):
    pass


def with_database(database_url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return make_conninfo(database_url, dbname=database)


@contextlib.contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh database on the same server for the duration of the block (needs CREATEDB).
    A leftover of a crashed attempt under the same name is dropped first."""
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    query = "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = %s"
    row = conn.execute(query, (schema,)).fetchone()
    return bool(row and row[0])


def restore_as(
    artifact: Path, manifest: Manifest, target_url: str, new_schema: str, bin_dir: Path,
    jobs: int = 2,
) -> dict[str, int]:  # fmt: skip
    """Restore the backup as `new_schema` in the target database, touching nothing else.

    pg_restore can only recreate a schema under its own name, so the backup is restored into a
    scratch database, renamed there, and copied into the target in one transaction: the target
    either has the whole new schema or nothing. Needs CREATEDB for the scratch database."""
    with psycopg.connect(target_url, autocommit=True) as conn:
        if schema_exists(conn, new_schema):
            raise SchemaExists(
                f"schema {new_schema!r} already exists in the target database: choose another "
                "name, or drop it first"
            )
    scratch = f"export_backup_restore_{uuid.uuid4().hex[:12]}"
    with scratch_database(target_url, scratch) as scratch_url:
        restore(artifact, manifest.format, manifest.compression, scratch_url, bin_dir, jobs)
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(manifest.schema_name), sql.Identifier(new_schema)
                )
            )
        _copy_schema(scratch_url, target_url, new_schema, bin_dir)
    return row_counts(target_url, new_schema)


def check_by_restore(
    artifact: Path, manifest: Manifest, server_url: str, scratch: str, bin_dir: Path,
    jobs: int = 2,
) -> RestoreCheck:  # fmt: skip
    """Restore the artifact into the scratch database `scratch` and compare its tables and exact
    row counts with the manifest. A restore that fails is a failed verdict, not an error."""
    started = time.monotonic()
    with scratch_database(server_url, scratch) as scratch_url:
        try:
            restore(artifact, manifest.format, manifest.compression, scratch_url, bin_dir, jobs)
            restored = row_counts(scratch_url, manifest.schema_name)
        except (RestoreFailed, OSError, zstandard.ZstdError, tarfile.TarError) as err:
            return RestoreCheck(
                verified=False,
                tables_expected=len(manifest.row_counts),
                tables_restored=0,
                error=f"the artifact does not restore: {err}",
                seconds=round(time.monotonic() - started, 3),
            )
    mismatches = row_count_mismatches(manifest.row_counts, restored)
    return RestoreCheck(
        verified=not mismatches,
        tables_expected=len(manifest.row_counts),
        tables_restored=len(restored),
        mismatches=mismatches,
        seconds=round(time.monotonic() - started, 3),
    )


def row_count_mismatches(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    problems = [f"{t}: missing after restore" for t in sorted(expected.keys() - restored.keys())]
    problems += [f"{t}: not in the manifest" for t in sorted(restored.keys() - expected.keys())]
    problems += [
        f"{t}: {expected[t]} rows in the manifest, {restored[t]} restored"
        for t in sorted(expected.keys() & restored.keys())
        if expected[t] != restored[t]
    ]
    return problems


def swap_schema(target_url: str, restored: str, original: str, keep_as: str) -> None:
    """In one transaction, move the live schema aside as `keep_as` and put `restored` in its
    place. Nothing is dropped, so objects elsewhere that depend on the old schema are untouched.
    Idempotent: a retry after a committed swap finds nothing left to do."""
    with psycopg.connect(target_url) as conn, conn.transaction():
        if not schema_exists(conn, restored):
            if schema_exists(conn, keep_as) and schema_exists(conn, original):
                return  # an earlier attempt committed the swap
            raise RestoreFailed(f"restored schema {restored!r} is missing; restore again")
        if schema_exists(conn, original):
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(original), sql.Identifier(keep_as)
                )
            )
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(restored), sql.Identifier(original)
            )
        )


def drop_schema(target_url: str, schema: str) -> None:
    """Remove a schema this tool created (a restore that was not swapped in)."""
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _copy_schema(source_url: str, target_url: str, schema: str, bin_dir: Path) -> None:
    """pg_dump | pg_restore --single-transaction: all of the schema lands, or none of it."""
    with client_connection(source_url) as source, client_connection(target_url) as target:
        dump = subprocess.Popen(
            [str(bin_dir / "pg_dump"), "--format=custom", "--compress=0", "--no-owner",
             "--no-acl", f"--schema={exact_schema_pattern(schema)}", "--strict-names",
             f"--dbname={source.conninfo}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **source.env}, pass_fds=source.pass_fds,
        )  # fmt: skip
        load = subprocess.run(
            [str(bin_dir / "pg_restore"), "--single-transaction", "--no-owner", "--no-acl",
             "--exit-on-error", f"--dbname={target.conninfo}"],
            stdin=dump.stdout, capture_output=True, text=True,
            env={**os.environ, **target.env}, pass_fds=target.pass_fds,
        )  # fmt: skip
        assert dump.stdout is not None and dump.stderr is not None
        dump.stdout.close()
        dump_error = dump.stderr.read().decode(errors="replace")
        if dump.wait() != 0 or load.returncode != 0:
            raise RestoreFailed(
                f"copying schema {schema!r} into the target failed: "
                f"{(dump_error + load.stderr).strip()[-2000:]}"
            )
