"""Back up a small schema in one activity: dump, verify, upload, remove the spool.

The workflow runs it as a local activity of the worker that runs its workflow task (patch
small-schema), so a tiny tenant's backup costs no dispatch, no host claim and no workflow task
of its own: most of a tiny backup's cost was those (issue 13). The steps are the pinned ones,
composed, with their guarantees: the object becomes visible only once the artifact matches its
manifest, the size cap stops the dump at once, and the manifest is written last.

A local activity has no heartbeat and no host of its own, so the steps clean up after
themselves: a failed or cancelled attempt removes its spool and aborts the upload it began
before it ends, and a redo on another worker (the first one died with its workflow task)
aborts what that one left unfinished under the run's key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cleanup import CleanupActivities
from activities.dump import DumpActivities
from activities.store import StoreActivities
from backup.models import (
    CleanupRequest,
    DumpSpec,
    SmallBackup,
    Step,
    StoredArtifact,
    StoreRequest,
)
from backup.settings import Settings
from backup.storage import open_storage


class SmallBackupActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dump = DumpActivities(settings)
        self._store = StoreActivities(settings)
        self._cleanup = CleanupActivities(settings)

    @activity.defn(name="back_up_small_schema")
    async def back_up_small_schema(self, spec: DumpSpec) -> SmallBackup:
        s = self._settings
        try:
            artifact = await self._dump.dump_schema(spec)
            request = StoreRequest(artifact=artifact, key_stem=spec.key_stem, run_key=spec.run_key)
            stored = await _as_step(Step.UPLOADING, self._store.store_artifact(request))
        except BaseException:
            await self._clean_up(spec)
            raise
        # What a worker that died mid-run left unfinished under this run's key (S3 parts it
        # sent are in its own spool's journal, which no other worker reads): one listing. The
        # backup is stored by now, so a failure is logged (the bucket's sweep gets the rest).
        try:
            await open_storage(s).abort_incomplete(spec.key_stem)
        except Exception as err:
            activity.logger.warning("unfinished uploads under %s kept: %s", spec.key_stem, err)
        return SmallBackup(artifact=artifact, stored=stored)

    async def _clean_up(self, spec: DumpSpec) -> None:
        """Remove the spool, abort the upload. Shielded: a cancellation may be what ended the
        steps, and the workflow, waiting for this activity, goes on only once it is done. A
        failure here is logged, never raised over the step's own error (the worker's start-up
        sweep removes a spool left behind)."""
        request = CleanupRequest(run_key=spec.run_key, key_stem=spec.key_stem)
        try:
            await asyncio.shield(self._cleanup.cleanup_spool_v2(request))
        except Exception as err:
            activity.logger.warning("cleanup of run %s failed: %s", spec.run_key, err)


# The key of a failure's details that names the step the one activity was in when it failed.
FAILED_STEP = "failed_step"


async def _as_step(step: Step, work: Awaitable[StoredArtifact]) -> StoredArtifact:
    """`work`'s result; its failure as before, with `step` in the details, so the run reports
    the step that failed (the store, not the dump) as the pinned steps do."""
    try:
        return await work
    except ApplicationError as err:
        raise ApplicationError(
            err.message, {FAILED_STEP: step.value}, type=err.type, non_retryable=err.non_retryable
        ) from err
