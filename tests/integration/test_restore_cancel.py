"""Cancelling RestoreBackupWorkflow mid-restore stops pg_restore/psql within seconds and leaves
no scratch database, staging schema or half-restored schema."""

from __future__ import annotations

import asyncio
import time
import uuid

import psutil
import psycopg
import pytest
from temporalio.client import WorkflowFailureError

from backup.models import ExportRequest
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import DevStack
from workflows.restore_backup import RestoreBackupWorkflow

TENANT = "bulky"


def restore_tools() -> list[psutil.Process]:
    """pg_restore/psql processes working on a restore's databases (their --dbname says so)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        tool = proc.info["name"] in ("pg_restore", "psql", "pg_dump")
        if tool and "restore" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def wait_for(condition: object, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


async def test_a_cancelled_restore_stops_its_tools_and_leaves_nothing(stack: DevStack) -> None:
    url = stack.postgres.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {TENANT} CASCADE")
        conn.execute(f"CREATE SCHEMA {TENANT}")
        conn.execute(
            f"CREATE TABLE {TENANT}.rows AS SELECT g AS id, md5(g::text) || repeat('x', 200)"
            " AS payload FROM generate_series(1, 1500000) g"
        )
        conn.execute(f"CREATE INDEX ON {TENANT}.rows (payload)")
        register_project(conn, TENANT, TENANT)
    client = await connect(stack.temporal.address, "default")
    backup = await (
        await start_export(client, stack.settings(), ExportRequest(project_id=TENANT))
    ).result()
    handle = await client.start_workflow(
        RestoreBackupWorkflow.run,
        {"location": backup.location, "into_schema": f"{TENANT}_copy"},
        id=f"restore-cancel-{uuid.uuid4().hex[:6]}",
        task_queue=stack.settings().temporal_task_queue,
    )
    await wait_for(lambda: restore_tools(), 60)

    await handle.cancel()
    stopped_after = await wait_for(lambda: not restore_tools(), 30)

    assert stopped_after < 10
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "cancel" in str(failed.value).lower() + str(failed.value.cause).lower()
    with psycopg.connect(url) as conn:
        databases = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'export_backup_restore_%'"
        ).fetchall()
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'export_backup_staging_%%'"
            " OR nspname = %s",
            (f"{TENANT}_copy",),
        ).fetchall()
    assert databases == [] and schemas == []
