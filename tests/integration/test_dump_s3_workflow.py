"""The whole ExportBackupWorkflow to S3 with parts sent while dumping, through a real worker: a
test restore still runs before anything is visible and the backup restores; SPOOL_MODE=stream
round-trips, and refuses a test restore clearly leaving nothing in the bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, WorkflowFailureError

from backup.models import ExportRequest, ExportResult
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import DevStack

PROJECT = "parts_flow"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_project(stack: DevStack) -> str:
    """~20 MiB of random bytes: four 5 MiB parts and a last one."""
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {PROJECT} CASCADE")
        conn.execute(f"CREATE SCHEMA {PROJECT}")
        conn.execute(
            f"CREATE TABLE {PROJECT}.blobs AS SELECT g AS id,"
            " (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')"
            "  FROM generate_series(1, 4096) i) AS body"
            " FROM generate_series(1, 320) g"
        )
        register_project(conn, PROJECT, PROJECT)
    return PROJECT


async def backup(
    stack: DevStack, tmp_path: Path, queue: str, request: ExportRequest, **env: str
) -> ExportResult:
    with stack.own_worker(tmp_path, queue, STORAGE_BACKEND="s3", S3_PART_SIZE_MIB="5", **env) as s:
        client: Client = await connect(stack.temporal.address, "default")
        return await (await start_export(client, s, request)).result()


def objects(stack: DevStack, run_tail: str = "") -> list[str]:
    assert stack.s3 is not None
    s3: Any = stack.s3.client()
    listed = s3.list_objects_v2(Bucket=stack.s3.bucket, Prefix=f"backups/{PROJECT}/")
    return [o["Key"] for o in listed.get("Contents", []) if run_tail in o["Key"]]


def open_uploads(stack: DevStack) -> list[str]:
    assert stack.s3 is not None
    s3: Any = stack.s3.client()
    listed = s3.list_multipart_uploads(Bucket=stack.s3.bucket, Prefix=f"backups/{PROJECT}/")
    return [u["Key"] for u in listed.get("Uploads", [])]


async def test_a_test_restored_backup_sent_while_dumping_restores(
    stack: DevStack, big_project: str, tmp_path: Path
) -> None:
    request = ExportRequest(project_id=big_project, verify_restore=True)
    result = await backup(stack, tmp_path, "parts-verify", request)
    assert result.size_bytes > 4 * 5 * MIB
    assert result.verification is not None and result.verification.verified
    assert open_uploads(stack) == []
    source, restored = await stack.restore_check(result)
    assert source == restored and sum(source.values()) > 0


async def test_stream_mode_backs_up_and_restores(
    stack: DevStack, big_project: str, tmp_path: Path
) -> None:
    request = ExportRequest(project_id=big_project)
    result = await backup(stack, tmp_path, "parts-stream", request, SPOOL_MODE="stream")
    assert result.size_bytes > 4 * 5 * MIB
    assert open_uploads(stack) == []
    assert not list((tmp_path / "spool").rglob("*.*"))
    source, restored = await stack.restore_check(result)
    assert source == restored and sum(source.values()) > 0


async def test_stream_mode_refuses_a_test_restore_and_leaves_nothing(
    stack: DevStack, big_project: str, tmp_path: Path
) -> None:
    before = set(objects(stack))
    request = ExportRequest(project_id=big_project, verify_restore=True)
    with pytest.raises(WorkflowFailureError) as caught:
        await backup(stack, tmp_path, "parts-stream-verify", request, SPOOL_MODE="stream")
    message = str(caught.value.cause)
    assert "SPOOL_MODE=stream" in message and "verify_restore" in message
    assert set(objects(stack)) == before
    assert open_uploads(stack) == []
