"""Remove the run's spool directory on the host that holds it, drop a test-restore database it
left, and abort any upload the run left unfinished in storage."""

from __future__ import annotations

from temporalio import activity

from activities.support import Blocking, step_errors
from backup.models import CleanupRequest
from backup.restore import drop_database
from backup.settings import Settings
from backup.spool import remove_run, scratch_database_of
from backup.storage import open_storage


class CleanupActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="cleanup_spool")
    async def cleanup_spool(self, run_key: str, key_stem: str | None = None) -> bool:
        """What runs started before cleanup_spool_v2 scheduled (patch store-step)."""
        return await self.cleanup_spool_v2(CleanupRequest(run_key=run_key, key_stem=key_stem))

    @activity.defn(name="cleanup_spool_v2")
    async def cleanup_spool_v2(self, request: CleanupRequest) -> bool:
        """Idempotent: True when spool files were removed, False when nothing was left."""
        s, run_key, key_stem = self._settings, request.run_key, request.key_stem
        with step_errors("cleanup"):
            async with Blocking("cleaning up") as blocking:
                scratch = scratch_database_of(s.spool_dir, run_key)
                if scratch:  # a test restore that did not finish
                    url = s.database_url.get_secret_value()
                    await blocking.run(lambda _: drop_database(url, scratch))
                # The spool goes before storage is asked anything: with the store down (the
                # very failure that may have ended the run), a retried abort must not keep the
                # disk full.
                removed = await blocking.run(lambda _: remove_run(s.spool_dir, run_key))
                if key_stem:  # async, heartbeated as well
                    aborted = await open_storage(s).abort_incomplete(key_stem)
                    if aborted:
                        activity.logger.info(
                            "aborted %d unfinished uploads under %s", aborted, key_stem
                        )
            return removed
