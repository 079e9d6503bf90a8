"""ExportBackupWorkflow's orchestration on the time-skipping server, with stand-in activities.

Covers the happy path, each step's failure, retryable vs non-retryable errors, and cleanup on
failure and on cancellation, as new runs take them (patch store-step: one store_artifact step,
no cleanup activity after a success on one host); runs started before replay from
tests/histories (tests/unit/test_replay.py). The lost-host path is in
test_workflow_host_loss.py (dev server).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from backup.models import BackupEvent, RestoreCheck, Step
from tests.standins import DELIVERIES, fail_with, harness, run_with_workers, running


async def test_happy_path_runs_every_step_in_order(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})

    # Verify, upload and the spool's removal are one step; nothing is left to clean up.
    assert h.fakes.calls[:-2] == [
        "validate_project",
        "claim_host",
        "dump_schema",
        "store_artifact",
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
    ("step", "error_type", "failed_step", "verify_restore"),
    [
        ("dump_schema", "BackupTooLarge", Step.DUMPING, False),
        # The store step verifies before it uploads: its failures are the upload step's.
        ("store_artifact", "BackupTooLarge", Step.UPLOADING, False),
        ("store_artifact", "ConfigurationError", Step.UPLOADING, False),
        # With a test restore, the artifact is verified in a step of its own first.
        ("verify_artifact", "BackupTooLarge", Step.VERIFYING, True),
        ("verify_restore", "DatabaseUnavailable", Step.TEST_RESTORING, True),
        ("store_artifact", "StorageError", Step.UPLOADING, True),
    ],
)
async def test_step_failure_cleans_up_then_notifies(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    step: str,
    error_type: str,
    failed_step: Step,
    verify_restore: bool,
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures[step] = fail_with(error_type, non_retryable=True)
    request = {"project_id": "acme", "verify_restore": verify_restore}
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, request)
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
    h.fakes.failures["store_artifact"] = fail_with("StorageError", non_retryable=False)
    with pytest.raises(WorkflowFailureError):
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert h.fakes.calls.count("store_artifact") == 10  # the upload policy's budget
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


async def test_after_a_re_dump_every_host_the_run_claimed_is_cleaned_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Host a lost its spool (the store step found it gone): the run dumps and stores on host b.
    Host a's spool is cleaned up there; host b's store step removed its own, but b cleans up
    too: it aborts the unfinished upload a's dump may have left, with a possibly gone for good."""
    h = harness(time_skipping_env, task_queue, ["a", "b"])
    h.fakes.failures["store_artifact"] = fail_with("ArtifactCorrupted", non_retryable=True, times=1)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    a, b = h.fakes.host_queues
    assert result.location
    assert h.fakes.calls.count("dump_schema") == 2
    cleanups = [c for c in h.fakes.calls if c.startswith("cleanup_spool@")]
    assert cleanups == [f"cleanup_spool@{a}", f"cleanup_spool@{b}"]
    assert h.fakes.calls.index(cleanups[0]) > h.fakes.calls.index("store_artifact")


async def test_a_failing_cleanup_never_fails_a_good_backup(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The spool of a host the run left is left to that host's start-up sweep; the stored
    backup stands."""
    h = harness(time_skipping_env, task_queue, ["a", "b"])
    h.fakes.failures["store_artifact"] = fail_with("ArtifactCorrupted", non_retryable=True, times=1)
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
    h.fakes.failures["store_artifact"] = fail_with("ArtifactCorrupted", non_retryable=True, times=1)
    result = await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert h.fakes.calls.count("dump_schema") == 2
    assert h.fakes.calls.count("store_artifact") == 2
    # The same host again: its spool is gone, but the first dump's upload may be open.
    assert h.fakes.calls.count(f"cleanup_spool@{h.fakes.host_queues[0]}") == 1
    assert result.location


async def test_a_verified_test_restore_is_in_the_result(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    request = {"project_id": "acme", "verify_restore": True}
    result = await run_with_workers(h, h.fakes.host_queues, request)
    calls = h.fakes.calls
    # Never a test restore of an unverified artifact, never an upload before it passed.
    assert calls[2:5] == ["dump_schema", "verify_artifact", "verify_restore"]
    assert calls[5] == "store_artifact" and calls.count("store_artifact") == 1
    assert not [c for c in calls if c.startswith("cleanup_spool")]
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
    assert "store_artifact" not in h.fakes.calls and "apply_retention" not in h.fakes.calls
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
    assert "verify_artifact" not in h.fakes.calls  # the store step verifies


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
    h.fakes.failures["store_artifact"] = storage_unreachable
    with pytest.raises(WorkflowFailureError) as caught:
        await run_with_workers(h, h.fakes.host_queues, {"project_id": "acme"})
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.details[0]["error_type"] == "StorageError"
    assert "check S3_ENDPOINT_URL" in str(caught.value.cause)
    assert h.fakes.notifications[0].error == "S3 endpoint unreachable; check S3_ENDPOINT_URL"


async def backup_steps_shown(handle: WorkflowHandle[Any, Any]) -> list[list[str]]:
    """The BackupStep values upserted, grouped by the workflow task whose commands sent them."""
    tasks: list[list[str]] = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("workflow_task_completed_event_attributes"):
            tasks.append([])
        elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "BackupStep" in fields.indexed_fields:
                payload = fields.indexed_fields["BackupStep"]
                tasks[-1].append(json.loads(payload.data))
    return [t for t in tasks if t]


@pytest.mark.parametrize(
    ("request_body", "shown"),
    [
        # Validate and claim a host are local activities: the first task ends waiting on the
        # dump, and shows only that; the deliveries are regular activities, then the end.
        ({}, ["dumping", "uploading", "notifying", "completed"]),
        (
            {"verify_restore": True},
            ["dumping", "verifying", "test_restoring", "uploading", "notifying", "completed"],
        ),
    ],
)
async def test_backup_step_is_upserted_once_per_wait(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    request_body: dict[str, Any],
    shown: list[str],
) -> None:
    h = harness(time_skipping_env, task_queue)
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme", **request_body})
        await handle.result()
        final = await handle.query("progress")
    tasks = await backup_steps_shown(handle)
    assert all(len(t) == 1 for t in tasks), tasks
    assert [t[0] for t in tasks] == shown
    assert final["step"] == "completed"


async def test_a_failed_run_shows_failed_after_cleaning_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = harness(time_skipping_env, task_queue)
    h.fakes.failures["store_artifact"] = fail_with("StorageError", non_retryable=True)
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme"})
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        final = await handle.query("progress")
    tasks = await backup_steps_shown(handle)
    assert all(len(t) == 1 for t in tasks), tasks
    assert [t[0] for t in tasks] == ["dumping", "uploading", "cleaning_up", "notifying", "failed"]
    assert final["step"] == "failed" and "StorageError on purpose" in final["error"]


async def test_cancellation_during_store_cleans_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Cancelled while storing: the spool is removed and the unfinished upload aborted by the
    cleanup step, as after a failure."""
    h = harness(time_skipping_env, task_queue)
    h.fakes.block_store = True
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme"})
        await asyncio.wait_for(h.fakes.store_started.wait(), 30)
        progress = await handle.query("progress")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    assert progress["step"] == "uploading"
    assert h.fakes.calls[-4:-2] == [
        f"cleanup_spool@{h.fakes.host_queues[0]}",
        "notification_channels",
    ]
    assert h.fakes.notifications[0].failed_step is Step.UPLOADING
    assert [t[0] for t in await backup_steps_shown(handle)][-1] == "cancelled"
