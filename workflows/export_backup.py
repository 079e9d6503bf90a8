"""ExportBackupWorkflow: validate → dump → store (verify, upload, remove the spool), then
retention and notify; with verify_restore, dump → verify → test restore → store. A small schema
(the validation says so) is backed up by one local activity that dumps and stores it.

Dump, verify, test restore, store and cleanup run on the worker-specific queue of the host that
holds the spool. When that host stops answering (schedule-to-start timeout) or its spool is
lost, the run claims another host and dumps again there.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import CleanupActivities
    from activities.dump import DumpActivities
    from activities.hosts import HostActivities
    from activities.projects import ProjectActivities
    from activities.retention import RetentionActivities
    from activities.small import FAILED_STEP, SmallBackupActivities
    from activities.store import StoreActivities
    from activities.upload import UploadActivities
    from activities.verify import VerifyActivities
    from activities.verify_restore import VerifyRestoreActivities
    from backup import layout
    from backup.errors import (
        BackupFailed,
        InvalidRequest,
        RestoreVerificationFailed,
        error_type,
    )
    from backup.models import (
        BackupEvent,
        CleanupRequest,
        DumpedArtifact,
        DumpSpec,
        ExportRequest,
        ExportResult,
        NotificationOutcome,
        Progress,
        Project,
        RestoreCheck,
        Step,
        StoredArtifact,
        StoreRequest,
        VerifyRestoreRequest,
        export_workflow_id,
    )
    from backup.retention import RetentionOutcome
    from workflows import policies
    from workflows.activity_calls import call_activity
    from workflows.export_notify import notify
    from workflows.export_patches import ExportPatches
    from workflows.export_steps import StepDisplay
    from workflows.failures import host_lost, root_message, root_type
    from workflows.inputs import parse_input
    from workflows.search_attributes import PROJECT_ID


@workflow.defn(name="ExportBackupWorkflow")
class ExportBackupWorkflow:
    _steps: StepDisplay  # set with the progress, once the input is parsed

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._hosts: list[str] = []
        self._verification: RestoreCheck | None = None
        self._patches = ExportPatches(small_schema=False, local_steps=False, store_step=False)
        self._stored_on: str | None = None  # the host whose store step succeeded

    @workflow.query(name="progress")
    def progress(self) -> Progress | None:
        return self._progress

    @workflow.run
    async def run(self, request: Any = None) -> ExportResult:
        """`request` is one JSON object (ExportRequest); typed Any so bad input gets a clear
        error instead of a stuck workflow task."""
        req = parse_input(ExportRequest, request, "ExportBackupWorkflow")
        self._patches = patches = ExportPatches.of_this_run()
        info = workflow.info()
        expected_id = req.request_id and export_workflow_id(req.project_id, req.request_id)
        if expected_id and info.workflow_id != expected_id:
            raise ApplicationError(
                f"request_id {req.request_id!r} deduplicates only under the workflow id "
                f"{expected_id!r}: start with that id, or leave request_id out",
                type=error_type(InvalidRequest),
                non_retryable=True,
            )
        # The key's stamp: since small-schema the run's start, which a workflow task retried
        # after a crash sees too (a one-step backup may have written under the key already).
        started_at = info.workflow_start_time if patches.small_schema else workflow.now()
        self._progress = Progress(project_id=req.project_id, step=Step.VALIDATING)
        self._steps = StepDisplay(
            self._progress, local_steps=patches.local_steps, coalesce=patches.store_step
        )
        started_with = info.typed_search_attributes.get(PROJECT_ID)
        if started_with != req.project_id or not patches.local_steps:  # the starter sets it
            workflow.upsert_search_attributes([PROJECT_ID.value_set(req.project_id)])
        run_key = info.run_id  # one spool directory and one storage key per workflow run
        key_stem = layout.key_stem(req.project_id, started_at, run_key)

        dumped: DumpedArtifact | None = None
        stored: StoredArtifact | None = None
        failure: FailureError | asyncio.CancelledError | None = None
        project: Project | None = None
        try:
            self._steps.enter(Step.VALIDATING)
            project = await call_activity(
                ProjectActivities.validate_project,
                policies.VALIDATE,
                f"Validate project {req.project_id}",
                req.project_id,
                local=patches.local_steps,  # older runs replay regular activities
            )
            spec = DumpSpec(
                project=project,
                format=req.format,
                compression=req.effective_compression,
                run_key=run_key,
                key_stem=key_stem,
            )
            if patches.small_schema and project.small and not req.verify_restore:
                dumped, stored = await self._back_up_small(spec)
            else:
                dumped, stored = await self._dump_verify_upload(spec, req.verify_restore)
        except (FailureError, asyncio.CancelledError) as err:
            # A local activity's failure arrives bare (no ActivityError around it).
            # Anything else is a bug: it fails the workflow task, which a fix can resume.
            failure = err
        failed_step = self._progress.step

        await self._cleanup(run_key, key_stem)

        finished_at = workflow.now()
        duration = round((finished_at - started_at).total_seconds(), 3)
        if failure is None:
            assert dumped is not None and stored is not None and project is not None
            retention = await self._retention(req.project_id)
            notifications = await self._notify(
                req,
                BackupEvent.SUCCEEDED,
                location=stored.location,
                size_bytes=dumped.size_bytes,
                sha256=dumped.sha256,
                table_count=dumped.table_count,
                duration_seconds=duration,
            )
            self._steps.enter(Step.COMPLETED, f"Backup stored at {stored.location}")
            self._steps.show()
            return ExportResult(
                project_id=req.project_id,
                schema_name=project.schema_name,
                location=stored.location,
                manifest_location=stored.manifest_location,
                size_bytes=dumped.size_bytes,
                raw_bytes=dumped.raw_bytes,
                sha256=dumped.sha256,
                table_count=dumped.table_count,
                format=req.format,
                compression=dumped.compression or req.effective_compression,
                started_at=started_at,
                finished_at=finished_at,
                duration_seconds=duration,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                notifications=notifications,
                verification=self._verification,
                retention=retention,
                dependencies=dumped.dependencies,
            )

        cancelled = is_cancelled_exception(failure)
        reason = "cancelled" if cancelled else root_message(failure)
        self._progress.error = reason
        await self._notify(
            req,
            BackupEvent.FAILED,
            duration_seconds=duration,
            failed_step=failed_step,
            error=reason,
        )
        if cancelled:
            self._steps.enter(Step.CANCELLED, f"Cancelled during {failed_step}")
            self._steps.show()
            raise failure
        self._steps.enter(Step.FAILED, f"Failed during {failed_step}: {reason}")
        self._steps.show()
        raise ApplicationError(
            f"backup of project {req.project_id!r} failed during {failed_step}: {reason}",
            {"failed_step": failed_step, "error_type": root_type(failure)},
            type=error_type(BackupFailed),
            non_retryable=True,
        ) from failure

    async def _back_up_small(self, spec: DumpSpec) -> tuple[DumpedArtifact, StoredArtifact]:
        """Dump, verify, upload and remove the spool in one local activity of this worker (patch
        small-schema); it cleans up after itself when it fails or is cancelled."""
        assert self._progress is not None
        self._steps.enter(Step.DUMPING, f"Backing up schema {spec.project.schema_name} in one step")
        try:
            backup = await call_activity(
                SmallBackupActivities.back_up_small_schema,
                policies.SMALL_BACKUP,
                f"Dump, verify and upload schema {spec.project.schema_name} ({spec.format}, "
                f"{spec.compression}), then remove its spool",
                spec,
                local=True,
                wait_cancellation=True,
            )
        except ApplicationError as err:  # one activity, two steps: it names the one that failed
            details = err.details[0] if err.details else None
            if isinstance(details, dict) and details.get(FAILED_STEP):
                self._progress.step = Step(details[FAILED_STEP])
            raise
        dumped, stored = backup.artifact, backup.stored
        self._progress.host_queue, self._progress.host_attempt = dumped.host_queue, 1
        self._progress.bytes_dumped, self._progress.size_bytes = dumped.raw_bytes, dumped.size_bytes
        self._progress.location = stored.location
        return dumped, stored

    async def _dump_verify_upload(
        self, spec: DumpSpec, verify_restore: bool
    ) -> tuple[DumpedArtifact, StoredArtifact]:
        """The pinned part of the run, moved to another host when its host is lost."""
        assert self._progress is not None
        for attempt in range(1, policies.MAX_HOST_ATTEMPTS + 1):
            self._steps.enter(Step.DUMPING)
            host = await call_activity(
                HostActivities.claim_host,
                policies.CLAIM_HOST,
                "Claim a host for the spool",
                local=self._patches.local_steps,  # older runs replay regular activities
            )
            self._hosts.append(host)
            self._progress.host_queue, self._progress.host_attempt = host, attempt
            try:
                self._steps.enter(
                    Step.DUMPING, f"Dumping schema {spec.project.schema_name} on {host}"
                )
                self._steps.show()
                dumped = await call_activity(
                    DumpActivities.dump_schema,
                    policies.DUMP,
                    f"Dump schema {spec.project.schema_name} ({spec.format}, {spec.compression})",
                    spec,
                    task_queue=host,
                )
                self._progress.bytes_dumped = dumped.raw_bytes
                self._progress.size_bytes = dumped.size_bytes
                if verify_restore or not self._patches.store_step:  # store_artifact verifies too
                    await self._verify(dumped, host)
                if verify_restore:
                    await self._test_restore(dumped, spec.run_key, host)
                stored = await self._upload(dumped, spec, host)
                self._progress.location = stored.location
                return dumped, stored
            except ActivityError as err:
                if attempt == policies.MAX_HOST_ATTEMPTS or not host_lost(err):
                    raise
                workflow.logger.warning("host %s lost (%s); dumping again elsewhere", host, err)
        raise AssertionError("unreachable")

    async def _verify(self, dumped: DumpedArtifact, host: str) -> None:
        self._steps.enter(Step.VERIFYING, f"Verifying {dumped.size_bytes} bytes")
        self._steps.show()
        await call_activity(
            VerifyActivities.verify_artifact,
            policies.VERIFY,
            f"Verify size and SHA-256 of {dumped.file_name}",
            dumped,
            task_queue=host,
        )

    async def _upload(self, dumped: DumpedArtifact, spec: DumpSpec, host: str) -> StoredArtifact:
        """Since store-step one activity verifies (again, after a test restore: at disk
        speed), uploads and removes the spool."""
        if not self._patches.store_step:
            self._steps.enter(Step.UPLOADING, f"Uploading {dumped.size_bytes} bytes")
            return await call_activity(
                UploadActivities.upload_artifact,
                policies.UPLOAD,
                f"Upload {dumped.file_name}",
                dumped,
                spec.key_stem,
                task_queue=host,
            )
        self._steps.enter(Step.UPLOADING, f"Verifying, then uploading {dumped.size_bytes} bytes")
        self._steps.show()
        stored = await call_activity(
            StoreActivities.store_artifact,
            policies.STORE,
            f"Verify and upload {dumped.file_name}, then remove its spool",
            StoreRequest(artifact=dumped, key_stem=spec.key_stem, run_key=spec.run_key),
            task_queue=host,
        )
        self._stored_on = host
        return stored

    async def _test_restore(self, dumped: DumpedArtifact, run_key: str, host: str) -> None:
        """Restore the artifact into a scratch database on its host; a mismatch with the manifest
        fails the backup before anything is uploaded."""
        self._steps.enter(Step.TEST_RESTORING, f"Test-restoring {dumped.file_name}")
        summary = f"Test restore of {dumped.file_name} into a scratch database"
        if self._patches.store_step:
            self._steps.show()
            check = await call_activity(
                VerifyRestoreActivities.verify_restore_v2,
                policies.VERIFY_RESTORE,
                summary,
                VerifyRestoreRequest(artifact=dumped, run_key=run_key),
                task_queue=host,
            )
        else:
            check = await call_activity(
                VerifyRestoreActivities.verify_restore,
                policies.VERIFY_RESTORE,
                summary,
                dumped,
                run_key,
                task_queue=host,
            )
        self._verification = check
        if not check.verified:
            raise ApplicationError(
                check.describe(),
                check.model_dump(mode="json"),
                type=error_type(RestoreVerificationFailed),
                non_retryable=True,
            )

    async def _cleanup(self, run_key: str, key_stem: str) -> None:
        """Remove the spool on every host this run used and abort unfinished uploads. Runs after
        failure and cancellation too; a host that is gone is skipped (its worker sweeps stale
        spools when it starts). Since store-step, a success on the one host claimed needs none:
        the store step removed its spool. After a re-dump the store's host is cleaned up too,
        for the unfinished uploads an earlier dump (its parts sent while dumping) may have left
        on a host that is gone."""
        hosts = list(dict.fromkeys(self._hosts))
        if self._stored_on is not None and len(self._hosts) == 1:
            hosts = []
        if hosts or not self._patches.store_step:
            self._steps.enter(Step.CLEANING_UP)
        for host in hosts:
            try:
                if self._patches.store_step:
                    self._steps.show()
                    await call_activity(
                        CleanupActivities.cleanup_spool_v2,
                        policies.CLEANUP,
                        f"Remove spool on {host}",
                        CleanupRequest(run_key=run_key, key_stem=key_stem),
                        task_queue=host,
                    )
                else:
                    await call_activity(
                        CleanupActivities.cleanup_spool,
                        policies.CLEANUP,
                        f"Remove spool on {host}",
                        run_key,
                        key_stem,
                        task_queue=host,
                    )
            except ActivityError as err:
                workflow.logger.warning("cleanup on %s skipped: %s", host, root_message(err))

    async def _retention(self, project_id: str) -> RetentionOutcome | None:
        """Prune the project's old backups now that a newer good one is stored. Only after a
        success, so failing backups can never push the last good one out."""
        if not self._patches.retention_after_backup():
            return None
        self._steps.enter(Step.PRUNING)
        try:
            return await call_activity(
                RetentionActivities.apply_retention,
                policies.RETENTION,
                f"Apply retention to {project_id}",
                project_id,
                local=self._patches.local_steps,  # older runs replay regular activities
            )
        except FailureError as err:  # ActivityError, or a local activity's bare failure
            return RetentionOutcome(project_id=project_id, policy="?", errors=[root_message(err)])

    async def _notify(
        self, req: ExportRequest, event: BackupEvent, **outcome: Any
    ) -> list[NotificationOutcome]:
        self._steps.enter(Step.NOTIFYING)
        return await notify(req, event, outcome, self._patches, self._steps.show)
