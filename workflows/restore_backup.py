"""RestoreBackupWorkflow: put a backup back, under a new schema, beside the original."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.restore import RestoreActivities
    from backup.models import RestoreRequest, RestoreResult, Step
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
        try:
            req = RestoreRequest.model_validate(request if request is not None else {})
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in err.errors()
            )
            raise ApplicationError(
                f"invalid RestoreBackupWorkflow input: {problems}",
                type="InvalidRequest",
                non_retryable=True,
            ) from None
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
