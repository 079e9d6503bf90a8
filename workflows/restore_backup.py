"""RestoreBackupWorkflow: put a backup back, under a new schema beside the original, or (with
an explicit confirmation) in place of the project's schema after a safety backup of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.restore import RestoreActivities, SchemaSwap
    from backup.errors import RestoreFailed, error_type
    from backup.models import (
        ExportRequest,
        ExportResult,
        RestoreRequest,
        RestoreResult,
        Step,
        short_run_id,
    )
    from workflows import policies
    from workflows.export_backup import ExportBackupWorkflow
    from workflows.failures import root_message
    from workflows.inputs import parse_input
    from workflows.search_attributes import BACKUP_STEP

# The swap takes one SchemaSwap (activity swap_in_restored_schema_v2); runs started before it
# replay the three-argument swap_in_restored_schema they scheduled.
TYPED_SWAP = "restore-typed-swap"

I = TypeVar("I")  # noqa: E741 (an activity's one input)


@workflow.defn(name="RestoreBackupWorkflow")
class RestoreBackupWorkflow:
    @workflow.run
    async def run(self, request: Any = None) -> RestoreResult:
        """`request`: {"location", "into_schema"} or {"location", "replace": true,
        "confirm_replace": true}; optional "database" for a new schema."""
        req = parse_input(RestoreRequest, request, "RestoreBackupWorkflow")
        target = f"schema {req.into_schema}" if req.into_schema else "the project's schema"
        self._step(Step.RESTORING, f"Restoring {req.location} as {target}")
        try:
            result = await workflow.execute_activity_method(
                RestoreActivities.restore_backup,
                req,
                start_to_close_timeout=policies.RESTORE.start_to_close,
                heartbeat_timeout=policies.RESTORE.heartbeat,
                retry_policy=policies.RESTORE.retry,
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
                    start_to_close_timeout=policies.SWAP.start_to_close,
                    retry_policy=policies.SWAP.retry,
                    cancellation_type=ActivityCancellationType.TRY_CANCEL,
                    summary="Drop what the restore left",
                )
            raise
        if req.replace:
            result = await self._replace(result)
        verdict = "rows match the manifest" if result.verified else "ROWS DIFFER from the manifest"
        self._step(Step.COMPLETED, f"Restored as {result.schema_name}: {verdict}")
        return result

    async def _replace(self, staged: RestoreResult) -> RestoreResult:
        """Staged restore verified → safety backup of the live schema → swap in one transaction.
        Until the swap, the live schema is untouched; any failure before it drops the stage."""
        assert staged.project_id and staged.source_schema
        original = staged.source_schema
        try:
            if not staged.verified:
                raise ApplicationError(
                    "the restored rows differ from the backup's manifest",
                    type=error_type(RestoreFailed),
                )
            self._step(Step.SAFETY_BACKUP, f"Backing up schema {original} before replacing it")
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
                    type=error_type(RestoreFailed),
                )
        except (ApplicationError, ChildWorkflowError) as err:
            await self._short(
                RestoreActivities.drop_restored_schema,
                staged.schema_name,
                f"drop restored schema: {staged.schema_name}",
            )
            raise ApplicationError(
                f"replace refused, schema {original!r} left untouched: {root_message(err)}",
                type=error_type(RestoreFailed),
                non_retryable=True,
            ) from err
        keep_as = f"{original[:40]}_before_restore_{short_run_id(workflow.info().run_id)}"
        self._step(Step.REPLACING, f"Swapping the restored schema in for {original}")
        swap = SchemaSwap(restored=staged.schema_name, original=original, keep_as=keep_as)
        summary = f"swap in restored schema: {swap.restored}, {swap.original}, {swap.keep_as}"
        if workflow.patched(TYPED_SWAP):
            await self._short(RestoreActivities.swap_in_restored_schema_v2, swap, summary)
        else:
            await workflow.execute_activity_method(
                RestoreActivities.swap_in_restored_schema,
                args=[swap.restored, swap.original, swap.keep_as],
                start_to_close_timeout=policies.SWAP.start_to_close,
                retry_policy=policies.SWAP.retry,
                summary=summary,
            )
        return staged.model_copy(
            update={
                "schema_name": original,
                "safety_backup_location": safety.location,
                "previous_schema": keep_as,
            }
        )

    async def _short(
        self,
        activity: Callable[[RestoreActivities, I], Awaitable[None]],
        arg: I,
        summary: str,
    ) -> None:
        """One of the short schema steps (swap, drop the stage), under the SWAP policy."""
        await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=policies.SWAP.start_to_close,
            retry_policy=policies.SWAP.retry,
            summary=summary,
        )

    def _step(self, step: Step, details: str) -> None:
        workflow.upsert_search_attributes([BACKUP_STEP.value_set(step.value)])
        workflow.set_current_details(details)
