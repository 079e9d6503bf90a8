"""Restore a backup by its location: download, verify signature and checksums, decrypt, restore
beside the original and check the rows against the manifest; in replace mode, swap the restored
schema in for the live one afterwards."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from activities.support import Blocking, Progress, blocking_step, step_errors
from backup.download import download
from backup.encryption import readable_artifact
from backup.manifest import Manifest
from backup.models import RestoreRequest, RestoreResult, short_run_id
from backup.pgdump import pg_bin_dir
from backup.restore import (
    Restored,
    drop_database,
    drop_schema,
    restore_as,
    staging_name,
    swap_schema,
    with_database,
)
from backup.settings import Settings


def staging_schema(schema: str, run_id: str) -> str:
    """Where replace mode restores before the swap; deterministic per run, within 63 bytes."""
    return f"{schema[:40]}_restore_{short_run_id(run_id)}"


def scratch_database_name(run_id: str) -> str:
    """Where a copy under a new name is restored first; deterministic per run, so a retry or
    the run's cleanup drops what a crashed attempt left."""
    return f"export_backup_restore_{short_run_id(run_id)}"


class SchemaSwap(BaseModel):
    """Input of swap_in_restored_schema_v2: in one transaction, `original` becomes `keep_as`
    and `restored` becomes `original`."""

    model_config = ConfigDict(frozen=True)

    restored: str
    original: str
    keep_as: str


class RestoreActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _target(self, database: str | None) -> str:
        url = self._settings.database_url.get_secret_value()
        return with_database(url, database) if database else url

    @activity.defn(name="restore_backup")
    async def restore_backup(self, request: RestoreRequest) -> RestoreResult:
        """Into `into_schema`, or (replace mode) into a staging schema beside the live one."""
        s = self._settings
        started = datetime.now(UTC)
        run_id = activity.info().workflow_run_id or "standalone"
        work = s.spool_dir / f"restore-{run_id}"
        target = self._target(request.database)
        names = (scratch_database_name(run_id), staging_name(short_run_id(run_id)))
        try:
            with step_errors("restore"):
                async with Blocking("restoring", every=1.0) as blocking:
                    # A retry starts clean: what a crashed attempt left is dropped first.
                    await blocking.run(lambda _: self._start_clean(work, names[0]))
                    manifest = await download(request.location, work / "artifact", s)
                    into = request.into_schema
                    if into is None:  # replace mode: a staging schema this run owns
                        into = staging_schema(manifest.schema_name, run_id)
                        await blocking.run(lambda _: drop_schema(target, into))
                    restored = await blocking.run(
                        lambda progress: self._restore(
                            work, manifest, target, into, names, progress
                        )
                    )
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, work, True))
        counts = restored.row_counts
        return RestoreResult(
            location=request.location,
            schema_name=into,
            database=request.database,
            table_count=len(counts),
            row_counts=counts,
            verified=counts == manifest.row_counts,
            started_at=started,
            finished_at=datetime.now(UTC),
            project_id=manifest.project_id,
            source_schema=manifest.schema_name,
            large_objects=restored.large_objects,
            notes=restored.notes,
            warnings=restored.warnings,
        )

    def _start_clean(self, work: Path, scratch: str) -> None:
        shutil.rmtree(work, ignore_errors=True)
        drop_database(self._target(None), scratch)
        work.mkdir(parents=True)

    def _restore(
        self,
        work: Path,
        manifest: Manifest,
        target: str,
        into: str,
        names: tuple[str, str],
        progress: Progress,
    ) -> Restored:
        s = self._settings
        scratch, staging = names
        artifact = readable_artifact(
            work / "artifact", manifest.encryption, s.encryption_identity_file
        )
        return restore_as(
            artifact,
            manifest,
            target,
            into,
            pg_bin_dir(s.pg_bin_dir),
            s.dump_jobs,
            scratch=scratch,
            staging=staging,
            create_extensions=s.restore_create_extensions,
            should_stop=progress,
        )

    @activity.defn(name="swap_in_restored_schema_v2")
    async def swap_in_restored_schema_v2(self, swap: SchemaSwap) -> None:
        with step_errors("replace"):
            await blocking_step(
                "replacing",
                lambda _: swap_schema(
                    self._target(None), swap.restored, swap.original, swap.keep_as
                ),
            )

    @activity.defn(name="swap_in_restored_schema")
    async def swap_in_restored_schema(self, restored: str, original: str, keep_as: str) -> None:
        """What runs started before swap_in_restored_schema_v2 scheduled (patch
        restore-typed-swap); the same swap."""
        await self.swap_in_restored_schema_v2(
            SchemaSwap(restored=restored, original=original, keep_as=keep_as)
        )

    @activity.defn(name="drop_restore_leftovers")
    async def drop_restore_leftovers(self, database: str | None) -> None:
        """The run's cleanup after its last attempt failed or died: its scratch database and
        its staging schema (names are per run, so nothing of another run is touched)."""
        run_id = activity.info().workflow_run_id or "standalone"

        def drop(_: Progress) -> None:
            drop_database(self._target(None), scratch_database_name(run_id))
            drop_schema(self._target(database), staging_name(short_run_id(run_id)))

        with step_errors("restore"):
            await blocking_step("cleaning up", drop)

    @activity.defn(name="drop_restored_schema")
    async def drop_restored_schema(self, schema: str) -> None:
        with step_errors("replace"):
            await blocking_step("replacing", lambda _: drop_schema(self._target(None), schema))
