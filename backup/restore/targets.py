"""Restore a backup into a target database, as it is (`restore`) or under a chosen schema name
(`restore_as`): under the schema's own name where that is free (no copy: one pg_restore in one
transaction), or under a new name beside the original (restored and renamed in a scratch
database, then copied in one transaction). Either way the target gets the whole schema or none
of it, and a target lacking a dependency fails before anything is created."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from backup import large_objects
from backup.dependency_models import Dependencies
from backup.errors import RestoreFailed, SchemaExists, ToolFailed
from backup.manifest import Manifest
from backup.models import Compression, DumpFormat
from backup.pgconn import client_connection
from backup.pgdump import exact_schema_pattern
from backup.pgtools import StopCheck, never_stop, start, wait
from backup.restore.artifact import Unpacked, unpack
from backup.restore.databases import (
    drop_schema,
    rename_schema,
    row_counts,
    schema_exists,
    scratch_database,
)
from backup.restore.load import load
from backup.restore.provide import create_in_schema, ensure, provide
from backup.restore.rename import fix_renamed
from backup.restore.staged import Copy, load_staged, structure


@dataclass
class Restored:
    row_counts: dict[str, int]
    notes: list[str] = field(default_factory=list)  # what was done beyond a plain restore
    warnings: list[str] = field(default_factory=list)  # what a person should look at
    large_objects: int = 0


def restore(
    artifact: Path,
    fmt: DumpFormat,
    compression: Compression,
    database_url: str,
    bin_dir: Path,
    jobs: int = 1,
    should_stop: StopCheck = never_stop,
) -> None:
    """Restore into the database at `database_url` as it is (the schema keeps its name), with
    `jobs` parallel workers for custom and directory formats. A large-object script appended to
    the artifact is not run (restore_as and check_by_restore do that, given the manifest)."""
    with tempfile.TemporaryDirectory(prefix="restore-") as scratch:
        unpacked = unpack(artifact, fmt, compression, Path(scratch))
        try:
            load(unpacked.dump, fmt, database_url, bin_dir, jobs=jobs, should_stop=should_stop)
        except ToolFailed as err:
            raise RestoreFailed(str(err)) from err


def restore_as(
    artifact: Path,
    manifest: Manifest,
    target_url: str,
    new_schema: str,
    bin_dir: Path,
    jobs: int = 2,
    *,
    scratch: str | None = None,
    staging: str | None = None,
    create_extensions: bool = False,
    should_stop: StopCheck = never_stop,
) -> Restored:
    """Restore the backup as `new_schema` in the target database, touching nothing else.
    `scratch` names the scratch database a copy under a new name needs (deterministic per run,
    so a retry replaces what a crashed attempt left), `staging` the schema it is restored
    under in the target before one rename shows it; by default both follow the new name."""
    deps = manifest.dependencies or Dependencies()
    digest = hashlib.sha256(new_schema.encode()).hexdigest()[:12]
    scratch = scratch or f"export_backup_restore_{digest}"
    staging = staging or staging_name(digest)
    with psycopg.connect(target_url, autocommit=True) as conn:
        if schema_exists(conn, new_schema):
            raise SchemaExists(
                f"schema {new_schema!r} already exists in the target database: choose another "
                "name, or drop it first"
            )
    original = manifest.schema_name
    notes = ensure(target_url, deps, create_extensions, original)  # before anything is created
    in_schema = bool(deps.extensions_in(original))
    with tempfile.TemporaryDirectory(prefix="restore-") as work:
        unpacked = unpack(
            artifact, manifest.format, manifest.compression, Path(work), deps.large_objects
        )
        try:
            if new_schema == original:
                if in_schema:
                    create_in_schema(target_url, deps, original, new_schema)
                load(
                    unpacked.dump,
                    manifest.format,
                    target_url,
                    bin_dir,
                    single_transaction=True,
                    existing_schema=new_schema if in_schema else None,
                    should_stop=should_stop,
                )
                warnings: list[str] = []
                moved = _large_objects(unpacked, deps, target_url, new_schema)
            else:
                copy = Copy(
                    dump=unpacked.dump,
                    fmt=manifest.format,
                    deps=deps,
                    original=original,
                    new=new_schema,
                    staging=staging,
                    scratch=scratch,
                    target_url=target_url,
                    bin_dir=bin_dir,
                    jobs=jobs,
                    should_stop=should_stop,
                )
                if manifest.format is not DumpFormat.SQL:
                    fixed, warnings, moved = _staged(copy, unpacked)
                elif in_schema:  # a script: no archive to pick entries from
                    raise RestoreFailed(
                        f"schema {original!r} holds an extension of its own: a copy under a new"
                        " name needs a custom, tar or directory backup (or restore it under its"
                        " own name)"
                    )
                else:
                    fixed, warnings = _copy_renamed(copy)
                    moved = _large_objects(unpacked, deps, target_url, new_schema)
                notes += fixed
        except BaseException as err:
            # Ours: neither existed when we started (a staging leftover was dropped).
            drop_schema(target_url, staging)
            drop_schema(target_url, new_schema)
            if isinstance(err, ToolFailed):
                raise RestoreFailed(str(err)) from err
            raise
    if moved:
        notes.append(f"{moved} large objects got new oids (theirs are taken in the target)")
    lo = deps.large_objects
    return Restored(row_counts(target_url, new_schema), notes, warnings, lo.count if lo else 0)


def staging_name(tag: str) -> str:
    """Lower-case letters, digits and `_` only: the data loader writes it unquoted."""
    return f"export_backup_staging_{tag}"


def _staged(c: Copy, unpacked: Unpacked) -> tuple[list[str], list[str], int]:
    """See staged.py: structure via a scratch database, data straight into the target under
    the staging name, then one rename."""
    drop_schema(c.target_url, c.staging)  # a crashed attempt's
    ddl, fixed, warnings = structure(c)
    if c.deps.extensions_in(c.original):
        create_in_schema(c.target_url, c.deps, c.original, c.staging)
    load_staged(c, ddl)
    moved = _large_objects(unpacked, c.deps, c.target_url, c.staging)
    with psycopg.connect(c.target_url) as conn, conn.transaction():
        if schema_exists(conn, c.new):
            raise SchemaExists(f"schema {c.new!r} appeared in the target while restoring")
        rename_schema(conn, c.staging, c.new)
    return fixed, warnings, moved


def _large_objects(unpacked: Unpacked, deps: Dependencies, target_url: str, schema: str) -> int:
    if not (unpacked.large_objects and deps.large_objects):
        return 0
    # One transaction: objects that do not match the backup are not left behind either.
    with psycopg.connect(target_url) as conn, conn.transaction():
        moved = large_objects.restore(conn, unpacked.large_objects, schema, deps.large_objects)
        problems = large_objects.problems(conn, schema, deps.large_objects)
        if problems:
            raise RestoreFailed("large objects do not match the backup: " + "; ".join(problems))
    return moved


def _copy_renamed(c: Copy) -> tuple[list[str], list[str]]:
    """A script (sql format): restore it into a scratch database given the dependencies,
    rename and fix it there, then copy it into the target in one transaction. Foreign keys into
    outside tables are validated in the target."""
    with scratch_database(c.target_url, c.scratch) as scratch_url:
        provide(scratch_url, c.deps, c.bin_dir, c.should_stop)
        load(
            c.dump,
            c.fmt,
            scratch_url,
            c.bin_dir,
            jobs=c.jobs,
            not_valid=c.deps.foreign_keys,
            should_stop=c.should_stop,
        )
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            rename_schema(conn, c.original, c.new)
            fixed, warnings = fix_renamed(conn, c.original, c.new)
        _copy_schema(scratch_url, c.target_url, c.new, c.bin_dir, c.should_stop)
    with psycopg.connect(c.target_url, autocommit=True) as conn:
        for fk in c.deps.foreign_keys:
            table = sql.Identifier(c.new, large_objects.parsed(conn, fk.table)[-1])
            try:
                conn.execute(
                    sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                        table, sql.Identifier(fk.name)
                    )
                )
            except psycopg.errors.ForeignKeyViolation as err:
                warnings.append(f"{table.as_string(conn)} {fk.name}: NOT VALID, {err}")
    return fixed, warnings


def _copy_schema(
    source_url: str, target_url: str, schema: str, bin_dir: Path, should_stop: StopCheck
) -> None:
    """pg_dump | pg_restore --single-transaction: all of the schema lands, or none of it."""
    with client_connection(source_url) as source, client_connection(target_url) as target:
        dump = start(
            bin_dir,
            "pg_dump",
            [
                "--format=custom",
                "--compress=0",
                "--no-owner",
                "--no-acl",
                f"--schema={exact_schema_pattern(schema)}",
                "--strict-names",
            ],
            source,
            stdout=subprocess.PIPE,
        )
        assert dump.stdout is not None
        try:
            load_proc = start(
                bin_dir,
                "pg_restore",
                ["--single-transaction", "--no-owner", "--no-acl", "--exit-on-error"],
                target,
                stdin=dump.stdout,
            )
        finally:
            dump.stdout.close()
        try:
            wait(load_proc, should_stop)
        finally:
            wait(dump, should_stop)
