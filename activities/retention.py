"""Apply the configured retention policy to one project's backups in the configured storage.

It returns what it did instead of failing: a retention problem (bad RETENTION_* setting,
storage that can not list or delete) is in the outcome's `errors` / `skipped_reason`, so the
backup it runs after is never failed by it.
"""

from __future__ import annotations

from temporalio import activity

from activities.support import step_errors
from backup.errors import BackupError
from backup.prune import apply_retention
from backup.retention import RetentionOutcome
from backup.settings import Settings
from backup.storage import open_storage


class RetentionActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="apply_retention")
    async def apply_retention(self, project_id: str) -> RetentionOutcome:
        with step_errors("retention"):  # metrics; nothing below raises a domain error
            try:
                policy = self._settings.retention_policy_for(project_id)
                storage = open_storage(self._settings)
            except BackupError as err:
                activity.logger.warning("retention of %s not applied: %s", project_id, err)
                return RetentionOutcome(
                    project_id=project_id,
                    policy="invalid configuration",
                    errors=[str(err)],
                    skipped_reason=f"retention not applied: {err}",
                )
            return await apply_retention(storage, project_id, policy)
