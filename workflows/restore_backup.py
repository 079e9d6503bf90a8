"""RestoreBackupWorkflow: put a backup back, under a new schema, beside the original."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.restore import RestoreActivities
    from backup.models import RestoreRequest, RestoreResult, Step
    from workflows.inputs import parse_input
    from workflows.policies import PERMANENT
    from workflows.search_attributes import BACKUP_STEP

RESTORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
    non_retryable_error_types=[*PERMANENT, "SchemaExists", "RestoreFailed"],
)


@workflow.defn(name="RestoreBackupWorkflow")
class RestoreBackupWorkflow:
    @workflow.run
    async def run(self, request: Any = None) -> RestoreResult:
        """`request`: {"location": ..., "into_schema": ..., "database": optional}."""
        req = parse_input(RestoreRequest, request, "RestoreBackupWorkflow")
        workflow.upsert_search_attributes([BACKUP_STEP.value_set("restoring")])
        workflow.set_current_details(f"Restoring {req.location} as schema {req.into_schema}")
        result = await workflow.execute_activity_method(
            RestoreActivities.restore_backup,
            req,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RESTORE_RETRY,
            summary=f"Restore into schema {req.into_schema}",
        )
        workflow.upsert_search_attributes([BACKUP_STEP.value_set(Step.COMPLETED.value)])
        verdict = "rows match the manifest" if result.verified else "ROWS DIFFER from the manifest"
        workflow.set_current_details(f"Restored as {req.into_schema}: {verdict}")
        return result
