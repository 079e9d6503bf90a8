"""Remove the run's spool directory on the host that holds it."""

from __future__ import annotations

from temporalio import activity

from activities.support import step_errors
from backup.settings import Settings
from backup.spool import remove_run


class CleanupActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="cleanup_spool")
    def cleanup_spool(self, run_key: str) -> bool:
        """Idempotent: True when files were removed, False when there was nothing left."""
        with step_errors("cleanup"):
            return remove_run(self._settings.spool_dir, run_key)
