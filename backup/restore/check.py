"""Test restore: restore an artifact into a scratch database given the backup's dependencies,
and compare it with the manifest: tables, exact row counts, every large-object reference and
its content. Foreign keys into tables outside the backup are restored NOT VALID there (their
rows are never copied) and the verdict names them."""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path

import psycopg
import zstandard

from backup import large_objects
from backup.dependency_models import Dependencies
from backup.errors import RestoreFailed, ToolFailed
from backup.manifest import Manifest
from backup.models import RestoreCheck
from backup.pgtools import StopCheck, never_stop
from backup.restore.artifact import unpack
from backup.restore.databases import row_count_mismatches, row_counts, scratch_database
from backup.restore.load import load
from backup.restore.provide import provide

RESTORE_ERRORS = (RestoreFailed, ToolFailed, OSError, zstandard.ZstdError, tarfile.TarError)


def check_by_restore(
    artifact: Path,
    manifest: Manifest,
    server_url: str,
    scratch: str,
    bin_dir: Path,
    jobs: int = 2,
    should_stop: StopCheck = never_stop,
) -> RestoreCheck:
    """A restore that fails is a failed verdict, not an error."""
    started = time.monotonic()
    deps = manifest.dependencies or Dependencies()
    schema = manifest.schema_name
    lo = deps.large_objects
    unvalidated = [
        f"{fk.table} {fk.name} → {fk.references}: not validated, the referenced rows are"
        " outside the backup"
        for fk in deps.foreign_keys
    ]
    problems: list[str] = []
    with (
        scratch_database(server_url, scratch) as url,
        tempfile.TemporaryDirectory(prefix="verify-") as work,
    ):
        try:
            notes = provide(url, deps, bin_dir, should_stop)
            unpacked = unpack(
                artifact, manifest.format, manifest.compression, Path(work), deps.large_objects
            )
            load(
                unpacked.dump,
                manifest.format,
                url,
                bin_dir,
                jobs=jobs,
                not_valid=deps.foreign_keys,
                should_stop=should_stop,
                existing_schema=schema if deps.extensions_in(schema) else None,
            )
            if lo:
                problems += [f"{m} refers to no large object at dump time" for m in lo.missing]
                with psycopg.connect(url, autocommit=True) as conn:
                    if unpacked.large_objects:
                        large_objects.restore(conn, unpacked.large_objects, schema, lo)
                    problems += large_objects.problems(conn, schema, lo)
            restored = row_counts(url, schema)
        except RESTORE_ERRORS as err:
            return RestoreCheck(
                verified=False,
                tables_expected=len(manifest.row_counts),
                tables_restored=0,
                error=f"the artifact does not restore: {err}",
                seconds=round(time.monotonic() - started, 3),
            )
    mismatches = row_count_mismatches(manifest.row_counts, restored) + problems
    return RestoreCheck(
        verified=not mismatches,
        tables_expected=len(manifest.row_counts),
        tables_restored=len(restored),
        mismatches=mismatches,
        not_validated=unvalidated,
        notes=notes,
        large_objects=lo.count if lo else 0,
        seconds=round(time.monotonic() - started, 3),
    )
