"""Prove the spooled artifact restores: restore it into a scratch database, compare tables and
row counts with the manifest, and record the verdict in the manifest before it is uploaded."""

from __future__ import annotations

from pathlib import Path

from temporalio import activity

from activities.support import Progress, blocking_step, step_errors
from backup.encryption import readable_artifact
from backup.models import DumpedArtifact, RestoreCheck, VerifyRestoreRequest
from backup.pgdump import pg_bin_dir
from backup.restore import check_by_restore
from backup.settings import Settings
from backup.spool import refuse_streamed, reserve_scratch_database, run_dir
from backup.verify import spooled_manifest


class VerifyRestoreActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="verify_restore_v2")
    async def verify_restore_v2(self, request: VerifyRestoreRequest) -> RestoreCheck:
        """The verdict, mismatch or not; the workflow decides what a mismatch means."""
        with step_errors("verify_restore"):
            return await blocking_step(
                "test restoring",
                lambda progress: self._check(request.artifact, request.run_key, progress),
                every=1.0,
            )

    @activity.defn(name="verify_restore")
    async def verify_restore(self, artifact: DumpedArtifact, run_key: str) -> RestoreCheck:
        """What runs started before verify_restore_v2 scheduled (patch store-step); the same
        test restore."""
        return await self.verify_restore_v2(
            VerifyRestoreRequest(artifact=artifact, run_key=run_key)
        )

    def _check(self, artifact: DumpedArtifact, run_key: str, progress: Progress) -> RestoreCheck:
        s = self._settings
        manifest_path = Path(artifact.manifest_path)
        # verify_artifact hashed the file just before: only check it is still there.
        refuse_streamed(Path(artifact.artifact_path), s.spool_mode)
        manifest = spooled_manifest(Path(artifact.artifact_path), manifest_path)
        # The cleanup activity drops the scratch database of a run whose worker died mid-restore.
        scratch = reserve_scratch_database(run_dir(s.spool_dir, run_key), run_key)
        plain = readable_artifact(
            Path(artifact.artifact_path), manifest.encryption, s.encryption_identity_file
        )
        try:
            check = check_by_restore(
                plain,
                manifest,
                s.database_url.get_secret_value(),
                scratch,
                pg_bin_dir(s.pg_bin_dir),
                s.dump_jobs,
                progress,
            )
        finally:
            if plain != Path(artifact.artifact_path):
                plain.unlink(missing_ok=True)
        manifest.model_copy(update={"verification": check}).write(manifest_path)
        return check
