"""The one-step backup of a small schema (patch small-schema) through a real worker, PostgreSQL,
Temporal and SeaweedFS: one local activity dumps, verifies, uploads and removes the spool, so
the run takes one workflow task (the console notification is local too) and schedules no
activity but the notifications of other channels; the stored
backup has its manifest, SHA-256 and exact row counts. Larger schemas, SMALL_SCHEMA_MAX_BYTES=0
and test restores take the pinned steps; a dump over the size cap and a cancellation mid-step
leave nothing behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from backup.download import download
from backup.models import ExportRequest, ExportResult
from backup.projects import find_active_project
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import DevStack
from reliability.harness import ActivityHistory, activity_history

PROJECT = "small_one_step"
ROWS = {"customers": 50, "orders": 120}


@pytest.fixture(scope="module")
def project(stack: DevStack) -> str:
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {PROJECT} CASCADE")
        conn.execute(f"CREATE SCHEMA {PROJECT}")
        conn.execute(
            f"CREATE TABLE {PROJECT}.customers AS"
            f" SELECT g AS id, 'customer ' || g AS name"
            f" FROM generate_series(1, {ROWS['customers']}) g"
        )
        conn.execute(f"ALTER TABLE {PROJECT}.customers ADD PRIMARY KEY (id)")
        conn.execute(
            f"CREATE TABLE {PROJECT}.orders AS SELECT g AS id, 1 + g % 50 AS customer_id,"
            f" g * 1.5 AS total FROM generate_series(1, {ROWS['orders']}) g"
        )
        register_project(conn, PROJECT, PROJECT)
    return PROJECT


def s3_client(stack: DevStack) -> tuple[Any, str]:
    assert stack.s3 is not None
    return stack.s3.client(), stack.s3.bucket


def objects(stack: DevStack) -> set[str]:
    s3, bucket = s3_client(stack)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"backups/{PROJECT}/")
    return {o["Key"] for o in listed.get("Contents", [])}


def open_uploads(stack: DevStack) -> list[str]:
    s3, bucket = s3_client(stack)
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"backups/{PROJECT}/")
    return [u["Key"] for u in listed.get("Uploads", [])]


def spool_files(folder: Path) -> list[Path]:
    return [p for p in (folder / "spool").rglob("*") if p.is_file()]


def key_of(location: str) -> str:
    return location.removeprefix("s3://").split("/", 1)[1]


async def backup(
    stack: DevStack, folder: Path, queue: str, request: ExportRequest | None = None, **env: str
) -> tuple[ExportResult, ActivityHistory]:
    with stack.own_worker(folder, queue, STORAGE_BACKEND="s3", **env) as settings:
        client: Client = await connect(stack.temporal.address, "default")
        handle = await start_export(client, settings, request or ExportRequest(project_id=PROJECT))
        result = await handle.result()
    return result, await activity_history(handle)


async def test_a_small_schema_is_backed_up_by_one_local_activity(
    stack: DevStack, project: str, tmp_path: Path
) -> None:
    before = objects(stack)
    # The console channel is delivered locally too: the whole run is one workflow task.
    result, history = await backup(stack, tmp_path, "small-one-step", NOTIFY_CHANNELS="console")
    assert history.local == [
        "validate_project",
        "back_up_small_schema",
        "apply_retention",
        "notification_channels",
        "deliver_notification_v2",
    ]
    assert dict(history.scheduled) == {} and history.workflow_tasks == 1
    assert history.patches == ["small-schema"]
    # Stored with its manifest, SHA-256 and exact row counts, and nothing else left behind.
    manifest_key = key_of(result.manifest_location)
    signed = {manifest_key + ".sig"} if stack.settings().manifest_signing_key_file else set()
    assert objects(stack) - before == {key_of(result.location), manifest_key} | signed
    assert result.table_count == len(ROWS)
    manifest = await download(result.location, tmp_path / "fetched", stack.settings())
    assert manifest.sha256 == result.sha256
    with psycopg.connect(stack.postgres.url()) as conn:
        for table, rows in ROWS.items():
            counted = conn.execute(f"SELECT count(*) FROM {PROJECT}.{table}").fetchone()
            assert manifest.row_counts[table] == rows == (counted or [0])[0]
    assert spool_files(tmp_path) == [] and open_uploads(stack) == []


async def test_the_validation_measures_the_schema_in_its_one_query(
    stack: DevStack, project: str
) -> None:
    url = stack.postgres.url()
    with psycopg.connect(url) as conn:
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (PROJECT,),
        ).fetchone()
    relation_bytes = int((size or [0])[0])
    assert relation_bytes > 0
    for limit, small in [(relation_bytes, True), (relation_bytes - 1, False), (0, False)]:
        found = await find_active_project(url, PROJECT, limit)
        assert (found.schema_name, found.small) == (PROJECT, small), limit


@pytest.mark.parametrize(
    ("queue", "env", "verify_restore"),
    [
        ("small-turned-off", {"SMALL_SCHEMA_MAX_BYTES": "0"}, False),
        ("small-larger", {"SMALL_SCHEMA_MAX_BYTES": "8192"}, False),  # below the schema's size
        ("small-verify-restore", {}, True),
    ],
)
async def test_the_pinned_steps_run_when_turned_off_larger_or_test_restored(
    stack: DevStack,
    project: str,
    tmp_path: Path,
    queue: str,
    env: dict[str, str],
    verify_restore: bool,
) -> None:
    request = ExportRequest(project_id=PROJECT, verify_restore=verify_restore)
    result, history = await backup(stack, tmp_path, queue, request, **env)
    assert "back_up_small_schema" not in history.local
    assert history.scheduled["dump_schema"] == 1 and history.scheduled["store_artifact"] == 1
    assert (result.verification is not None) == verify_restore
    assert spool_files(tmp_path) == [] and open_uploads(stack) == []


async def test_a_dump_over_the_size_cap_fails_at_once_and_leaves_nothing(
    stack: DevStack, project: str, tmp_path: Path
) -> None:
    before = objects(stack)
    with pytest.raises(WorkflowFailureError) as caught:
        await backup(stack, tmp_path, "small-too-large", BACKUP_MAX_BYTES="64")
    cause = caught.value.cause
    while isinstance(cause, ApplicationError) and cause.cause is not None:
        cause = cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BackupTooLarge"
    assert objects(stack) == before and open_uploads(stack) == []
    assert spool_files(tmp_path) == []


async def test_a_cancelled_one_step_backup_leaves_nothing(
    stack: DevStack, project: str, tmp_path: Path
) -> None:
    """The dump waits for a lock a transaction holds, inside the local activity; the run is
    cancelled there: pg_dump is stopped, the spool removed, nothing stored."""
    before = objects(stack)
    with (
        psycopg.connect(stack.postgres.url()) as blocker,
        stack.own_worker(tmp_path, "small-cancelled", STORAGE_BACKEND="s3") as settings,
    ):
        blocker.execute(f"LOCK TABLE {PROJECT}.orders IN ACCESS EXCLUSIVE MODE")
        client: Client = await connect(stack.temporal.address, "default")
        handle = await start_export(client, settings, ExportRequest(project_id=PROJECT))
        await wait_for_lock_wait(stack)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        blocker.rollback()
    assert isinstance(caught.value.cause, CancelledError)
    history = await activity_history(handle)
    assert "dump_schema" not in history.scheduled
    assert objects(stack) == before and open_uploads(stack) == []
    assert spool_files(tmp_path) == []


async def wait_for_lock_wait(stack: DevStack, timeout: float = 60) -> None:
    """Until a session of the dump waits for the lock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        while not (conn.execute(query).fetchone() or [0])[0]:
            assert loop.time() < deadline, "the dump never waited for the lock"
            await asyncio.sleep(0.1)
