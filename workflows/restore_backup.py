"""RestoreBackupWorkflow: put a backup back, under a new schema beside the original, or (with
an explicit confirmation) in place of the project's schema after a safety backup of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.restore import RestoreActivities
    from backup.models import (
        ExportRequest,
        ExportResult,
        RestoreRequest,
        RestoreResult,
        Step,
        short_run_id,
    )
    from workflows.export_backup import ExportBackupWorkflow, root_message
    from workflows.inputs import parse_input
    from workflows.policies import PERMANENT
    from workflows.search_attributes import BACKUP_STEP

RESTORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
    non_retryable_error_types=[*PERMANENT, "SchemaExists", "RestoreFailed"],
)
# Renames in one short transaction; the database may be restarting.
SWAP_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10,
                         non_retryable_error_types=[*PERMANENT, "RestoreFailed"])  # fmt: skip


@workflow.defn(name="RestoreBackupWorkflow")
class RestoreBackupWorkflow:
    @workflow.run
    async def run(self, request: Any = None) -> RestoreResult:
        """`request`: {"location", "into_schema"} or {"location", "replace": true,
        "confirm_replace": true}; optional "database" for a new schema."""
        req = parse_input(RestoreRequest, request, "RestoreBackupWorkflow")
        target = f"schema {req.into_schema}" if req.into_schema else "the project's schema"
        self._step("restoring", f"Restoring {req.location} as {target}")
        try:
            result = await workflow.execute_activity_method(
                RestoreActivities.restore_backup,
                req,
                start_to_close_timeout=timedelta(hours=6),
                # It heartbeats every second: a dead worker is noticed in 20 s, then retried.
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=RESTORE_RETRY,
                # A cancelled restore stops its tools and drops what it created: wait for that.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"Restore into {target}",
            )
        except ActivityError:
            # The last attempt may have died mid-restore: drop its scratch database and staging
            # schema (named after this run), whether it failed, timed out or was cancelled.
            if workflow.patched("restore-drops-leftovers"):
                await workflow.execute_activity_method(
                    RestoreActivities.drop_restore_leftovers,
                    req.database,
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=SWAP_RETRY,
                    cancellation_type=ActivityCancellationType.TRY_CANCEL,
                    summary="Drop what the restore left",
                )
            raise
        if req.replace:
            result = await self._replace(result)
        verdict = "rows match the manifest" if result.verified else "ROWS DIFFER from the manifest"
        self._step(Step.COMPLETED.value, f"Restored as {result.schema_name}: {verdict}")
        return result

    async def _replace(self, staged: RestoreResult) -> RestoreResult:
        """Staged restore verified → safety backup of the live schema → swap in one transaction.
        Until the swap, the live schema is untouched; any failure before it drops the stage."""
        assert staged.project_id and staged.source_schema
        original = staged.source_schema
        try:
            if not staged.verified:
                raise ApplicationError(
                    "the restored rows differ from the backup's manifest", type="RestoreFailed"
                )
            self._step("safety_backup", f"Backing up schema {original} before replacing it")
            safety: ExportResult = await workflow.execute_child_workflow(
                ExportBackupWorkflow.run,
                ExportRequest(project_id=staged.project_id).model_dump(mode="json"),
                id=f"{workflow.info().workflow_id}-safety-backup",
                static_summary=f"Safety backup of {original} before a restore replaces it",
            )
            if safety.schema_name != original:
                raise ApplicationError(
                    f"project {staged.project_id!r} now lives in schema {safety.schema_name!r},"
                    f" not {original!r} as in the backup; restore with into_schema instead",
                    type="RestoreFailed",
                )
        except (ApplicationError, ChildWorkflowError) as err:
            await self._activity(RestoreActivities.drop_restored_schema, staged.schema_name)
            raise ApplicationError(
                f"replace refused, schema {original!r} left untouched: {root_message(err)}",
                type="RestoreFailed",
                non_retryable=True,
            ) from err
        keep_as = f"{original[:40]}_before_restore_{short_run_id(workflow.info().run_id)}"
        self._step("replacing", f"Swapping the restored schema in for {original}")
        await self._activity(
            RestoreActivities.swap_in_restored_schema, staged.schema_name, original, keep_as
        )
        return staged.model_copy(
            update={
                "schema_name": original,
                "safety_backup_location": safety.location,
                "previous_schema": keep_as,
            }
        )

    async def _activity(self, fn: Any, *args: str) -> None:
        await workflow.execute_activity(
            fn,
            args=args,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=SWAP_RETRY,
            summary=f"{fn.__name__.replace('_', ' ')}: {', '.join(args)}",
        )

    def _step(self, step: str, details: str) -> None:
        workflow.upsert_search_attributes([BACKUP_STEP.value_set(step)])
        workflow.set_current_details(details)
