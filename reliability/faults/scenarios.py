"""The faults: stage one, check the outcome, return a one-line detail (or raise AssertionError).
Faults of one shape share one function and differ by a row (RESTARTS, SPOOL_FULL); the checks
every outcome needs are the `_succeeded` / `_failed` helpers. SCENARIOS names them all and marks
those fast enough for CI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

from backup.download import download
from backup.files import sha256_of
from backup.models import ExportResult
from devstack.ports import free_port
from devstack.stack import DevStack
from reliability.faults.staging import (
    MULTIPART,
    PG_DOWN_S,
    S3_DOWN_S,
    SLOW_DUMP,
    TEMPORAL_DOWN_S,
    Worker,
    activity_failure,
    attempts,
    check_clean,
    check_notified,
    down_while_dumping,
    failure_details,
    failure_of,
    random_bytes,
    result_of,
    start,
    tenant,
    text_rows,
    tiny_filesystem,
    tiny_spool,
    unfinished_uploads,
    wait_for_file,
    webhooks_for,
    worker,
)
from reliability.harness import activity_history


async def _succeeded(
    stack: DevStack, w: Worker, handle: WorkflowHandle, result: ExportResult
) -> None:
    """A local artifact that matches its SHA-256, no spool left, the success webhook."""
    stored = Path(result.location.removeprefix("file://"))
    assert sha256_of(stored) == result.sha256, "the stored artifact does not match its SHA-256"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")


async def _failed(
    stack: DevStack, w: Worker, handle: WorkflowHandle, step: str, activity: str, budget: int
) -> tuple[str, bool, str]:
    """The step's activity failed after exactly `budget` attempts, no spool left, the failure
    webhook naming the step; the activity's last error (type, non-retryable, message)."""
    tries = await attempts(handle, activity)
    assert tries == budget, f"{tries} {activity} attempts, expected {budget}"
    check_clean(w)
    await check_notified(stack, handle, "backup.failed", step=step)
    return await activity_failure(handle, activity)


Control = Callable[[], object]


@dataclass(frozen=True)
class Restart:
    """A server stops while pg_dump runs and comes back on the same ports."""

    schema: str
    server: str  # as the detail names it
    seconds: float
    controls: Callable[[DevStack], tuple[Control, Control]]  # stop, start again
    redumps: bool  # the fault fails the dump, which must run again
    serves_next: bool  # the same worker process must serve the next backup


RESTARTS = {
    # PostgreSQL fast shutdown: the dump fails, is retried after 10 s, the backup completes.
    "postgres": Restart(
        "faults_pg",
        "PostgreSQL",
        PG_DOWN_S,
        lambda stack: (stack.postgres.stop, stack.postgres.start_again),
        redumps=True,
        serves_next=False,
    ),
    # The Temporal dev server (SQLite file): the workflow completes and the same worker
    # process serves the next backup.
    "temporal": Restart(
        "faults_temporal",
        "Temporal",
        TEMPORAL_DOWN_S,
        lambda stack: (stack.temporal.stop, stack.temporal.start),
        redumps=False,
        serves_next=True,
    ),
}


async def restart_while_dumping(case: Restart, stack: DevStack, work: Path) -> str:
    project = tenant(stack, case.schema, text_rows(60_000))
    stop, start_again = case.controls(stack)
    with worker(stack, work, case.schema, SLOW_DUMP) as w:
        handle = await start(stack, w, project)
        await down_while_dumping(w, stop, start_again, case.seconds, hold_the_dump=case.redumps)
        result = await result_of(handle)
        after = ""
        if case.serves_next:
            again = await result_of(await start(stack, w, "acme"), timeout=180)
            assert w.proc.poll() is None, "the worker exited"
            after = f"; the same worker then backed up acme ({again.size_bytes} bytes)"
    dumps = await attempts(handle, "dump_schema")
    if case.redumps:
        assert dumps >= 2, f"the dump ran {dumps} time(s): the fault missed it"
    await _succeeded(stack, w, handle, result)
    return (
        f"{case.server} down {case.seconds:g} s mid-dump; dump attempts {dumps}; "
        f"{result.size_bytes} bytes stored, SHA-256 verified{after}"
    )


async def _kill_s3_once_uploading(stack: DevStack, w: Worker, handle: WorkflowHandle) -> None:
    """Kill SeaweedFS once the run's multipart upload is created (its journal is written)."""
    assert stack.s3 is not None
    journal = w.spool / str(handle.result_run_id) / "upload-state.json"
    await asyncio.to_thread(wait_for_file, journal)  # CreateMultipartUpload answered
    await asyncio.to_thread(stack.s3.kill)


async def s3_restart_during_upload(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed right after the multipart upload is created and restarted 8 s later
    on the same ports and data: the upload is retried, resumes and completes."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3", random_bytes(40 * 1024))  # about 40 MB stored
    # The upload step's resume is what this tests: with parts sent while dumping, the upload
    # would be created (and the fault land) during the dump.
    env = {**MULTIPART, "ZSTD_LEVEL": "1", "S3_UPLOAD_WHILE_DUMPING": "false"}
    with worker(stack, work, "s3", env) as w:
        handle = await start(stack, w, project)
        await _kill_s3_once_uploading(stack, w, handle)
        await asyncio.sleep(S3_DOWN_S)
        await asyncio.to_thread(stack.s3.start_again)
        result = await result_of(handle)
    uploads = await attempts(handle, "store_artifact")
    assert uploads >= 2, f"the upload ran {uploads} time(s): the fault missed it"
    fetched = work / "s3-download"
    manifest = await download(result.location, fetched, stack.settings())  # size, SHA-256
    fetched.unlink()
    assert manifest.sha256 == result.sha256
    left = unfinished_uploads(stack, project)
    assert not left, f"unfinished multipart uploads left: {left}"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"S3 killed after CreateMultipartUpload, down {S3_DOWN_S:g} s; upload attempts "
        f"{uploads}; {result.size_bytes} bytes downloaded and verified; no unfinished upload"
    )


async def s3_unreachable_short_budget(stack: DevStack, work: Path) -> str:
    """The S3 endpoint never answers (nothing listens on its port). The worker hook cuts the
    upload budget to 3 attempts (1 s, 2 s apart) and cleanup's to 2; the workflow, activities,
    errors, cleanup (whose abort call fails too, after the spool is removed) and notification
    are as in production. s3_stopped_for_good runs the production budget."""
    dead = f"http://127.0.0.1:{free_port()}"
    # Cleanup's own abort call can not reach the store either: 2 quick attempts, not 5 over 30 s.
    budgets = {"store_artifact": (3, 1.0, 2.0), "cleanup_spool_v2": (2, 1.0, 1.0)}
    env = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": dead}
    with worker(stack, work, "s3-dead", env, budgets) as w:
        handle = await start(stack, w, "acme")
        error = await failure_of(handle)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    kind, permanent, message = await _failed(stack, w, handle, "uploading", "store_artifact", 3)
    assert kind == "StorageError" and not permanent, (kind, permanent)
    assert f"S3 at {dead} unreachable" in message, message
    return (
        f"3 upload attempts ({kind}: {message[:70]}...), then BackupFailed with "
        f"error_type {details['error_type']}; spool removed; webhook backup.failed (uploading)"
    )


async def s3_unreachable_one_step(stack: DevStack, work: Path) -> str:
    """As s3_unreachable_short_budget, for a small schema's one-step backup (a local activity
    doing dump and store): 2 attempts, then the run fails naming the upload, not the dump,
    with nothing left on the spool."""
    dead = f"http://127.0.0.1:{free_port()}"
    budgets = {"back_up_small_schema": (2, 1.0, 1.0)}
    env = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": dead, "SMALL_SCHEMA_MAX_BYTES": "16777216"}
    with worker(stack, work, "s3-dead-one-step", env, budgets) as w:
        handle = await start(stack, w, "acme")
        error = await failure_of(handle)
    details = failure_details(error)
    assert details == {"failed_step": "uploading", "error_type": "StorageError"}, details
    assert f"S3 at {dead} unreachable" in error.message, error.message
    history = await activity_history(handle)
    assert "back_up_small_schema" in history.local and not history.scheduled.get("dump_schema")
    check_clean(w)
    return f"one-step backup failed during uploading ({error.message[:80]}...); spool removed"


async def s3_stopped_for_good(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed mid-upload and stays down for the whole production budget (10
    attempts, backoff up to 2 min: about 11 minutes). Script only."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3_gone", random_bytes(40 * 1024))
    env = {**MULTIPART, "ZSTD_LEVEL": "1"}
    try:
        with worker(stack, work, "s3-gone", env) as w:
            handle = await start(stack, w, project)
            await _kill_s3_once_uploading(stack, w, handle)
            error = await failure_of(handle, timeout=30 * 60)
    finally:
        await asyncio.to_thread(stack.s3.start_again)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    # The production budget: 10 attempts.
    kind, _, message = await _failed(stack, w, handle, "uploading", "store_artifact", 10)
    assert kind == "StorageError", kind
    # Cleanup could not reach the store to abort the run's multipart upload: with S3 back, it
    # is still there. Reported, not failed: only a bucket lifecycle rule can catch this case.
    left = unfinished_uploads(stack, project)
    return (
        f"10 upload attempts then BackupFailed ({message[:100]}); "
        f"unfinished multipart uploads once S3 is back: {len(left)}"
    )


async def notifications_down(stack: DevStack, work: Path) -> str:
    """Nothing listens at the SMTP server's or the webhook's address: the backup succeeds after
    the full delivery budget (6 attempts, 135 s of backoff when the port is closed) and records
    both failures.
    Script only; in CI test_failed_notification_never_fails_a_good_backup (tests/workflow/)
    and test_smtp_down_is_a_retryable_failure_without_the_password (tests/unit/) cover it."""
    env = {"SMTP_PORT": str(free_port()), "WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"}
    with worker(stack, work, "notify-down", env) as w:
        handle = await start(stack, w, "acme")
        result = await result_of(handle)
    outcomes = {n.channel: n for n in result.notifications}
    assert outcomes["console"].status == "sent", outcomes
    assert outcomes["email"].status == "failed" and outcomes["webhook"].status == "failed", outcomes
    check_clean(w)
    assert not await webhooks_for(stack, handle.id, wait=0), "the stack's receiver got a webhook"
    errors = "; ".join(f"{c}: {outcomes[c].error}" for c in ("email", "webhook"))
    return f"backup stored at {result.location.rsplit('/', 1)[-1]}; recorded {errors}"[:300]


@dataclass(frozen=True)
class SpoolFull:
    """The spool disk (a tmpfs) is too small: SpoolFull, permanent, after one dump attempt."""

    schema: str
    table: str  # staging's create-table SQL
    size: str  # of the tmpfs
    fields: tuple[tuple[str, Any], ...]  # of the request
    says: str  # a phrase the error must hold
    detail_from: str  # where the reported detail starts in the message


SPOOL_FULL = {
    # About 9 MB of table data on 2 MiB: the pre-check refuses before pg_dump starts, naming
    # SPOOL_DIR, needed and free bytes.
    "before_dump": SpoolFull(
        "faults_spool", text_rows(30_000), "2m", (), "bytes are free", "not enough"
    ),
    # The estimate passes (2.4 MB of table data on 3 MiB) but the uncompressed SQL dump writes
    # bytea as hex, 4 MB: ENOSPC mid-write becomes SpoolFull at once, the partial file is gone.
    "during_write": SpoolFull(
        "faults_enospc",
        random_bytes(2048),
        "3m",
        (("format", "sql"), ("compress", False)),
        "ran out of space",
        "SPOOL_DIR",
    ),
}


async def spool_full(case: SpoolFull, stack: DevStack, work: Path) -> str:
    project = tenant(stack, case.schema, case.table)
    with (
        tiny_filesystem(work / f"tiny-{case.schema}", size=case.size) as spool,
        worker(stack, work, case.schema, tiny_spool(spool)) as w,
    ):
        handle = await start(stack, w, project, **dict(case.fields))
        error = await failure_of(handle)
    details = failure_details(error)
    assert details == {"failed_step": "dumping", "error_type": "SpoolFull"}, details
    assert f"SPOOL_DIR {spool}" in error.message, error.message
    assert case.says in error.message, error.message
    # 1 attempt: SpoolFull must not be retried.
    kind, permanent, _ = await _failed(stack, w, handle, "dumping", "dump_schema", 1)
    assert kind == "SpoolFull" and permanent, (kind, permanent)
    return error.message[error.message.index(case.detail_from) :][:200]


Scenario = Callable[[DevStack, Path], Awaitable[str]]

# name → (scenario, run by tests/reliability/test_faults.py)
SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    "postgres_restart_during_dump": (partial(restart_while_dumping, RESTARTS["postgres"]), True),
    "s3_restart_during_upload": (s3_restart_during_upload, True),
    "s3_unreachable_short_budget": (s3_unreachable_short_budget, True),
    "s3_unreachable_one_step": (s3_unreachable_one_step, True),
    "s3_stopped_for_good": (s3_stopped_for_good, False),
    "notifications_down": (notifications_down, False),
    "spool_full_before_dump": (partial(spool_full, SPOOL_FULL["before_dump"]), True),
    "spool_full_during_write": (partial(spool_full, SPOOL_FULL["during_write"]), True),
    "temporal_restart_mid_workflow": (partial(restart_while_dumping, RESTARTS["temporal"]), True),
}
