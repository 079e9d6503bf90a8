"""Store a dumped artifact in one activity: verify it, upload it, remove the run's spool.

One activity instead of verify_artifact, upload_artifact and cleanup_spool: each regular
activity costs the server a dispatch and the run a workflow task, most of a tiny backup's cost.
The guarantees are those of the three steps: the upload starts only once the artifact matches
its manifest (and a retry verifies again before it resumes the upload), and the object becomes
visible only at the upload's end (for S3 parts sent while dumping, the multipart upload is
completed there). The spool goes only after the upload succeeded; after a failure the
workflow's cleanup removes it and aborts the unfinished upload, as before.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.support import blocking_step, step_errors
from activities.upload import upload, upload_state
from activities.verify import verify
from backup.models import StoredArtifact, StoreRequest
from backup.settings import Settings
from backup.spool import remove_run


class StoreActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="store_artifact")
    async def store_artifact(self, request: StoreRequest) -> StoredArtifact:
        s, artifact = self._settings, request.artifact
        # The verify step's heartbeats carry the upload's resumable state forward, so a crash
        # while verifying again does not lose what the attempt before had sent.
        await verify(artifact, s.backup_max_bytes, upload_state(artifact))
        stored = await upload(artifact, request.key_stem, s)
        # A crash before this ends is retried: verify, then upload again under the same key.
        try:
            with step_errors("cleanup"):
                await blocking_step(
                    "cleaning up", lambda _: remove_run(s.spool_dir, request.run_key)
                )
        except OSError as err:  # as a failed cleanup step: it never fails a stored backup
            activity.logger.warning(
                "spool of run %s not removed (%s); the worker's start-up sweep removes it",
                request.run_key,
                err,
            )
        except asyncio.CancelledError:
            # The object is visible already: a cancellation this late gets the result (the
            # removal has ended by now), so the run reports the backup it made.
            activity.logger.info("cancelled after storing %s: completing", stored.location)
        return stored
