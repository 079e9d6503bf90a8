"""Restore a backup by its location: download, verify signature and checksums, decrypt, restore
beside the original and check the rows against the manifest; in replace mode, swap the restored
schema in for the live one afterwards."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime

from temporalio import activity

from activities.support import ByteProgress, heartbeating, step_errors
from backup.download import download
from backup.encryption import readable_artifact
from backup.models import RestoreRequest, RestoreResult, short_run_id
from backup.pgdump import pg_bin_dir
from backup.restore import drop_schema, restore_as, swap_schema, with_database
from backup.settings import Settings


def staging_schema(schema: str, run_id: str) -> str:
    """Where replace mode restores before the swap; deterministic per run, within 63 bytes."""
    return f"{schema[:40]}_restore_{short_run_id(run_id)}"


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
        shutil.rmtree(work, ignore_errors=True)  # a retry starts clean
        work.mkdir(parents=True)
        target = self._target(request.database)
        try:
            with step_errors("restore"):
                async with heartbeating(ByteProgress("restoring")):
                    manifest = await download(request.location, work / "artifact", s)
                    into = request.into_schema
                    if into is None:  # replace mode: a staging schema this run owns
                        into = staging_schema(manifest.schema_name, run_id)
                        await asyncio.to_thread(drop_schema, target, into)
                    artifact = readable_artifact(
                        work / "artifact", manifest.encryption, s.encryption_identity_file
                    )
                    counts = await asyncio.to_thread(
                        restore_as, artifact, manifest, target, into,
                        pg_bin_dir(s.pg_bin_dir), s.dump_jobs,
                    )  # fmt: skip
        finally:
            shutil.rmtree(work, ignore_errors=True)
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
        )

    @activity.defn(name="swap_in_restored_schema")
    async def swap_in_restored_schema(self, restored: str, original: str, keep_as: str) -> None:
        with step_errors("replace"):
            await asyncio.to_thread(swap_schema, self._target(None), restored, original, keep_as)

    @activity.defn(name="drop_restored_schema")
    async def drop_restored_schema(self, schema: str) -> None:
        with step_errors("replace"):
            await asyncio.to_thread(drop_schema, self._target(None), schema)
