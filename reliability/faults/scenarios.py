"""The faults, one function each: stage it, check the outcome, return a one-line detail (or
raise AssertionError). SCENARIOS names them and marks those fast enough for CI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from backup.download import download
from backup.files import sha256_of
from devstack.ports import free_port
from devstack.stack import DevStack
from reliability.faults.staging import (
    MULTIPART,
    PG_DOWN_S,
    S3_DOWN_S,
    SLOW_DUMP,
    TEMPORAL_DOWN_S,
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


async def postgres_restart_during_dump(stack: DevStack, work: Path) -> str:
    """PostgreSQL stops (fast shutdown) while pg_dump runs and comes back on the same port:
    the dump fails, is retried after 10 s and the backup completes."""
    project = tenant(stack, "faults_pg", text_rows(60_000))
    with worker(stack, work, "pg", SLOW_DUMP) as w:
        handle = await start(stack, w, project)
        await down_while_dumping(w, stack.postgres.stop, stack.postgres.start_again, PG_DOWN_S)
        result = await result_of(handle)
    dumps = await attempts(handle, "dump_schema")
    assert dumps >= 2, f"the dump ran {dumps} time(s): the fault missed it"
    stored = Path(result.location.removeprefix("file://"))
    assert sha256_of(stored) == result.sha256, "the stored artifact does not match its SHA-256"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"PostgreSQL down {PG_DOWN_S:g} s mid-dump; dump attempts {dumps}; "
        f"{result.size_bytes} bytes stored, SHA-256 verified"
    )


async def s3_restart_during_upload(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed right after the multipart upload is created and restarted 8 s later
    on the same ports and data: the upload is retried, resumes and completes."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3", random_bytes(40 * 1024))  # about 40 MB stored
    env = {**MULTIPART, "ZSTD_LEVEL": "1"}
    with worker(stack, work, "s3", env) as w:
        handle = await start(stack, w, project)
        journal = w.spool / str(handle.result_run_id) / "upload-state.json"
        await asyncio.to_thread(wait_for_file, journal)  # CreateMultipartUpload answered
        await asyncio.to_thread(stack.s3.kill)
        await asyncio.sleep(S3_DOWN_S)
        await asyncio.to_thread(stack.s3.start_again)
        result = await result_of(handle)
    uploads = await attempts(handle, "upload_artifact")
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
    budgets = {"upload_artifact": (3, 1.0, 2.0), "cleanup_spool": (2, 1.0, 1.0)}
    env = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": dead}
    with worker(stack, work, "s3-dead", env, budgets) as w:
        handle = await start(stack, w, "acme")
        error = await failure_of(handle)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    kind, permanent, message = await activity_failure(handle, "upload_artifact")
    assert kind == "StorageError" and not permanent, (kind, permanent)
    assert f"S3 at {dead} unreachable" in message, message
    uploads = await attempts(handle, "upload_artifact")
    assert uploads == 3, f"{uploads} upload attempts, expected the budget of 3"
    check_clean(w)
    await check_notified(stack, handle, "backup.failed", step="uploading")
    return (
        f"{uploads} upload attempts ({kind}: {message[:70]}...), then BackupFailed with "
        f"error_type {details['error_type']}; spool removed; webhook backup.failed (uploading)"
    )


async def s3_stopped_for_good(stack: DevStack, work: Path) -> str:
    """SeaweedFS is killed mid-upload and stays down for the whole production budget (10
    attempts, backoff up to 2 min: about 11 minutes). Script only."""
    assert stack.s3 is not None
    project = tenant(stack, "faults_s3_gone", random_bytes(40 * 1024))
    env = {**MULTIPART, "ZSTD_LEVEL": "1"}
    try:
        with worker(stack, work, "s3-gone", env) as w:
            handle = await start(stack, w, project)
            journal = w.spool / str(handle.result_run_id) / "upload-state.json"
            await asyncio.to_thread(wait_for_file, journal)
            await asyncio.to_thread(stack.s3.kill)
            error = await failure_of(handle, timeout=30 * 60)
    finally:
        await asyncio.to_thread(stack.s3.start_again)
    details = failure_details(error)
    assert details["failed_step"] == "uploading", details
    kind, _, message = await activity_failure(handle, "upload_artifact")
    assert kind == "StorageError", kind
    uploads = await attempts(handle, "upload_artifact")
    assert uploads == 10, f"{uploads} upload attempts, expected the production budget of 10"
    check_clean(w)
    await check_notified(stack, handle, "backup.failed", step="uploading")
    # Cleanup could not reach the store to abort the run's multipart upload: with S3 back, it
    # is still there. Reported, not failed: only a bucket lifecycle rule can catch this case.
    left = unfinished_uploads(stack, project)
    return (
        f"{uploads} upload attempts then BackupFailed ({message[:100]}); "
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


async def spool_full_before_dump(stack: DevStack, work: Path) -> str:
    """SPOOL_DIR is a 2 MiB tmpfs and the tenant has about 9 MB of table data: the pre-check
    refuses before pg_dump starts, once, naming SPOOL_DIR, needed and free bytes."""
    project = tenant(stack, "faults_spool", text_rows(30_000))
    with (
        tiny_filesystem(work / "tiny-spool") as spool,
        worker(stack, work, "spool", tiny_spool(spool)) as w,
    ):
        handle = await start(stack, w, project)
        error = await failure_of(handle)
        check_clean(w)
    details = failure_details(error)
    assert details == {"failed_step": "dumping", "error_type": "SpoolFull"}, details
    assert f"SPOOL_DIR {spool}" in error.message and "bytes are free" in error.message, error
    dumps = await attempts(handle, "dump_schema")
    assert dumps == 1, f"{dumps} dump attempts: SpoolFull must not be retried"
    kind, permanent, _ = await activity_failure(handle, "dump_schema")
    assert kind == "SpoolFull" and permanent, (kind, permanent)
    await check_notified(stack, handle, "backup.failed", step="dumping")
    return error.message[error.message.index("not enough") :][:200]


async def spool_full_during_write(stack: DevStack, work: Path) -> str:
    """The estimate passes (2.4 MB of table data on a 3 MiB spool) but the uncompressed SQL
    dump writes bytea as hex, 4 MB: ENOSPC mid-write becomes SpoolFull at once, and the partial
    file is gone."""
    project = tenant(stack, "faults_enospc", random_bytes(2048))
    with (
        tiny_filesystem(work / "tiny-spool-2", size="3m") as spool,
        worker(stack, work, "enospc", tiny_spool(spool)) as w,
    ):
        handle = await start(stack, w, project, format="sql", compress=False)
        error = await failure_of(handle)
        check_clean(w)
    details = failure_details(error)
    assert details == {"failed_step": "dumping", "error_type": "SpoolFull"}, details
    assert "ran out of space" in error.message, error.message
    dumps = await attempts(handle, "dump_schema")
    assert dumps == 1, f"{dumps} dump attempts: SpoolFull must not be retried"
    kind, permanent, _ = await activity_failure(handle, "dump_schema")
    assert kind == "SpoolFull" and permanent, (kind, permanent)
    await check_notified(stack, handle, "backup.failed", step="dumping")
    return error.message[error.message.index("SPOOL_DIR") :][:200]


async def temporal_restart_mid_workflow(stack: DevStack, work: Path) -> str:
    """The Temporal dev server (SQLite file) stops while pg_dump runs and starts again on the
    same ports: the workflow completes and the same worker process serves the next backup."""
    project = tenant(stack, "faults_temporal", text_rows(60_000))
    with worker(stack, work, "temporal", SLOW_DUMP) as w:
        handle = await start(stack, w, project)
        await down_while_dumping(w, stack.temporal.stop, stack.temporal.start, TEMPORAL_DOWN_S)
        result = await result_of(handle)
        after = await result_of(await start(stack, w, "acme"), timeout=180)
        assert w.proc.poll() is None, "the worker exited"
    dumps = await attempts(handle, "dump_schema")
    stored = Path(result.location.removeprefix("file://"))
    assert sha256_of(stored) == result.sha256, "the stored artifact does not match its SHA-256"
    check_clean(w)
    await check_notified(stack, handle, "backup.succeeded")
    return (
        f"Temporal down {TEMPORAL_DOWN_S:g} s mid-dump; dump attempts {dumps}; the same worker "
        f"then backed up acme ({after.size_bytes} bytes)"
    )


Scenario = Callable[[DevStack, Path], Awaitable[str]]

# name → (scenario, run by tests/reliability/test_faults.py)
SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    "postgres_restart_during_dump": (postgres_restart_during_dump, True),
    "s3_restart_during_upload": (s3_restart_during_upload, True),
    "s3_unreachable_short_budget": (s3_unreachable_short_budget, True),
    "s3_stopped_for_good": (s3_stopped_for_good, False),
    "notifications_down": (notifications_down, False),
    "spool_full_before_dump": (spool_full_before_dump, True),
    "spool_full_during_write": (spool_full_during_write, True),
    "temporal_restart_mid_workflow": (temporal_restart_mid_workflow, True),
}
