"""ExportBackupWorkflow's orchestration on the time-skipping server, with stand-in activities.

Covers the happy path, each step's failure, retryable vs non-retryable errors, and cleanup on
failure and on cancellation. The lost-host path is in test_workflow_host_loss.py (dev server).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from backup.models import BackupEvent, RestoreCheck, Step
from tests.standins import DELIVERIES, fail_with, harness, run_with_workers, running


async def test_happy_path_runs_every_step_in_order(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})

    assert h.fakes.calls[:-2] == [
        "validate_project",
        "claim_host",
        "dump_schema",
        "verify_artifact",
        "upload_artifact",
        f"cleanup_spool@{h.fakes.host_queues[0]}",
        "apply_retention",
        "notification_channels",
    ]
    assert set(h.fakes.calls[-2:]) == DELIVERIES
    assert result.retention and result.retention.kept == ["file:///k"]
    assert result.project_id == "acme"
    assert result.location.startswith("file:///backups/backups/acme/")
    assert (result.size_bytes, result.raw_bytes, result.table_count) == (100, 400, 3)
    assert result.format == "custom" and result.compression == "zstd"
    assert result.finished_at >= result.started_at
    assert {(n.channel, n.status) for n in result.notifications} == {
        ("console", "sent"),
        ("webhook", "sent"),
    }
    assert h.fakes.notifications[0].event is BackupEvent.SUCCEEDED


async def test_defaults_and_options_reach_the_dump(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    result = await run_with_workers(
        h, h.fakes.host_queues, {"project_id": "acme", "format": "sql", "compress": False}
    )
    assert result.format == "sql" and result.compression == "none"


@pytest.mark.parametrize(
    ("request_body", "field_name"),
    [
        ({}, "project_id"),
        ({"project_id": "acme", "format": "zip"}, "format"),
        ({"project_id": "acme", "bogus": 1}, "bogus"),
        ({"project_id": "acme", "notify_email": "not-an-email"}, "notify_email"),
        ({"project_id": "a*b"}, "project_id"),
        ({"project_id": "x" * 10_000}, "project_id"),
        # Started under another workflow id, a request_id would deduplicate nothing.
        ({"project_id": "acme", "request_id": "r1"}, "export-backup-acme-r1"),
        ("acme", "input"),
        (None, "project_id"),
    ],
)
async def test_invalid_input_fails_at_once_naming_the_field(
    time_skipping_env: WorkflowEnvironment, task_queue: str, request_body: Any, field_name: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, request_body)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidRequest" and cause.non_retryable
    assert field_name in cause.message
    assert h.fakes.calls == []


async def test_missing_project_is_not_retried_and_notifies_failure(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["validate_project"] = fail_with("ProjectNotFound", non_retryable=True)
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "ghost"})
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BackupFailed"
    assert "validating" in cause.message and "ProjectNotFound on purpose" in cause.message
    assert h.fakes.calls[:2] == ["validate_project", "notification_channels"]
    assert set(h.fakes.calls[2:]) == DELIVERIES
    failed = h.fakes.notifications[0]
    assert failed.event is BackupEvent.FAILED and failed.failed_step is Step.VALIDATING


async def test_transient_dump_failures_are_retried(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["dump_schema"] = fail_with("DumpFailed", non_retryable=False, times=2)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert h.fakes.calls.count("dump_schema") == 3
    assert result.sha256 == "ab" * 32


@pytest.mark.parametrize(
    ("step", "error_type", "failed_step"),
    [
        ("dump_schema", "BackupTooLarge", Step.DUMPING),
        ("verify_artifact", "BackupTooLarge", Step.VERIFYING),
        ("upload_artifact", "ConfigurationError", Step.UPLOADING),
    ],
)
async def test_step_failure_cleans_up_then_notifies(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    step: str,
    error_type: str,
    failed_step: Step,
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures[step] = fail_with(error_type, non_retryable=True)
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.details[0]["error_type"] == error_type
    assert h.fakes.calls.count(step) == 1, "a non-retryable error must not be retried"
    assert h.fakes.calls[-4:-2] == [
        f"cleanup_spool@{h.fakes.host_queues[0]}",
        "notification_channels",
    ]
    assert h.fakes.notifications[0].failed_step is failed_step


async def test_upload_retries_exhausted_still_cleans_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["upload_artifact"] = fail_with("StorageError", non_retryable=False)
    with pytest.raises(WorkflowFailureError):
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert h.fakes.calls.count("upload_artifact") == 10  # the upload policy's budget
    assert f"cleanup_spool@{h.fakes.host_queues[0]}" in h.fakes.calls


async def test_failed_notification_never_fails_a_good_backup(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["deliver_notification:webhook"] = fail_with(
        "NotificationFailed", non_retryable=False
    )
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert result.location
    outcomes = {n.channel: n for n in result.notifications}
    assert outcomes["console"].status == "sent"
    assert outcomes["webhook"].status == "failed"
    assert "NotificationFailed on purpose" in (outcomes["webhook"].error or "")
    assert h.fakes.calls.count("deliver_notification:webhook") == 6  # the delivery budget


async def test_choosing_channels_failing_never_fails_a_good_backup(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["notification_channels"] = fail_with("Broken", non_retryable=True)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert result.location
    [outcome] = result.notifications
    assert outcome.status == "failed" and "Broken on purpose" in (outcome.error or "")


async def test_a_failing_cleanup_never_fails_a_good_backup(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The spool is left to the host's start-up sweep; the stored backup stands."""
    h = harness(time_skipping_env, task_queue)
    cleanup = f"cleanup_spool@{h.fakes.host_queues[0]}"
    h.fakes.failures[cleanup] = fail_with("PermissionError", non_retryable=False)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert result.location
    assert h.fakes.calls.count(cleanup) == 5  # the cleanup policy's budget, then moved on
    assert h.fakes.notifications[0].event is BackupEvent.SUCCEEDED


async def test_cancellation_during_dump_cleans_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.block_dump = True
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme"})
        await asyncio.wait_for(h.fakes.dump_started.wait(), 30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    assert h.fakes.calls[-4:-2] == [
        f"cleanup_spool@{h.fakes.host_queues[0]}",
        "notification_channels",
    ]
    assert h.fakes.notifications[0].error == "cancelled"


async def test_lost_spool_is_dumped_again(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["verify_artifact"] = fail_with(
        "ArtifactCorrupted", non_retryable=True, times=1
    )
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert h.fakes.calls.count("dump_schema") == 2
    assert result.location


async def test_a_verified_test_restore_is_in_the_result(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    request = {"project_id": "acme", "verify_restore": True}
    result = await run_with_workers(h, h.fakes.host_queues, request)
    calls = h.fakes.calls
    assert calls.index("verify_artifact") < calls.index("verify_restore")
    assert calls.index("verify_restore") < calls.index("upload_artifact")
    assert result.verification == h.fakes.restore_check


async def test_a_test_restore_mismatch_fails_the_backup_before_upload_and_notifies(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.restore_check = RestoreCheck(
        verified=False,
        tables_expected=3,
        tables_restored=3,
        mismatches=["acme.orders: 120 rows in the manifest, 119 restored"],
        seconds=0.2,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(
            h, h.fakes.host_queues, {"project_id": "acme", "verify_restore": True}
        )
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.details[0]["error_type"] == "RestoreVerificationFailed"
    assert "upload_artifact" not in h.fakes.calls and "apply_retention" not in h.fakes.calls
    assert f"cleanup_spool@{h.fakes.host_queues[0]}" in h.fakes.calls
    failed = h.fakes.notifications[0]
    assert failed.event is BackupEvent.FAILED and failed.failed_step is Step.TEST_RESTORING
    assert "acme.orders: 120 rows in the manifest, 119 restored" in (failed.error or "")


async def test_without_verify_restore_no_test_restore_runs(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert "verify_restore" not in h.fakes.calls and result.verification is None


async def test_a_retention_failure_is_reported_and_the_backup_still_succeeds(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["apply_retention"] = fail_with("StorageError", non_retryable=True)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert result.location and result.retention is not None
    assert result.retention.pruned == [] and "StorageError on purpose" in result.retention.errors[0]


async def test_the_failure_names_the_domain_error_not_the_library_beneath_it(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    def storage_unreachable(_: int) -> None:
        try:
            raise ConnectionError("Could not connect to the endpoint URL")
        except ConnectionError as err:
            raise ApplicationError(
                "S3 endpoint unreachable; check S3_ENDPOINT_URL",
                type="StorageError",
                non_retryable=True,
            ) from err

    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["upload_artifact"] = storage_unreachable
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.details[0]["error_type"] == "StorageError"
    assert "check S3_ENDPOINT_URL" in str(caught.value.cause)
    assert h.fakes.notifications[0].error == "S3 endpoint unreachable; check S3_ENDPOINT_URL"
