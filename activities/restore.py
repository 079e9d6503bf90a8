"""Restore a backup by its location under a new schema: download, verify signature and
checksums, decrypt, restore beside the original, and check the rows against the manifest."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime

from temporalio import activity

from activities.support import ByteProgress, heartbeating, step_errors
from backup.download import download
from backup.encryption import decrypt_file
from backup.errors import ConfigurationError
from backup.models import RestoreRequest, RestoreResult
from backup.pgdump import pg_bin_dir
from backup.restore import restore_as, with_database
from backup.settings import Settings


class RestoreActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="restore_backup")
    async def restore_backup(self, request: RestoreRequest) -> RestoreResult:
        s = self._settings
        started = datetime.now(UTC)
        work = s.spool_dir / f"restore-{activity.info().workflow_run_id}"
        shutil.rmtree(work, ignore_errors=True)  # a retry starts clean
        work.mkdir(parents=True)
        progress = ByteProgress("restoring")
        try:
            with step_errors("restore"):
                async with heartbeating(progress):
                    artifact = work / "artifact"
                    manifest = await download(request.location, artifact, s)
                    if manifest.encryption:
                        if s.encryption_identity_file is None:
                            raise ConfigurationError(
                                "the backup is encrypted: set ENCRYPTION_IDENTITY_FILE on the "
                                "restoring worker"
                            )
                        plain = work / "plain"
                        decrypt_file(artifact, plain, s.encryption_identity_file)
                        artifact = plain
                    target = s.database_url.get_secret_value()
                    if request.database:
                        target = with_database(target, request.database)
                    counts = await asyncio.to_thread(
                        restore_as, artifact, manifest, target, request.into_schema,
                        pg_bin_dir(s.pg_bin_dir), s.dump_jobs,
                    )  # fmt: skip
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return RestoreResult(
            location=request.location,
            schema_name=request.into_schema,
            database=request.database,
            table_count=len(counts),
            row_counts=counts,
            verified=counts == manifest.row_counts,
            started_at=started,
            finished_at=datetime.now(UTC),
        )
