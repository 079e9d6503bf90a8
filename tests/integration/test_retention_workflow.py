"""Retention after each successful backup, on the dev stack: a worker configured to keep the
last two backups of a project leaves exactly the two newest in storage."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import psycopg
from temporalio.client import Client

from backup.models import ExportRequest, ExportResult
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack


def stored_path(location: str) -> Path:
    return Path(unquote(urlparse(location).path))


async def test_each_backup_prunes_beyond_keep_last(stack: DevStack, tmp_path: Path) -> None:
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS keeper")
        conn.execute("CREATE TABLE IF NOT EXISTS keeper.notes AS SELECT 1 AS id")
        register_project(conn, "keeper", "keeper")
    client: Client = await connect(stack.temporal.address, "default")
    with stack.own_worker(tmp_path, "retention-test", RETENTION_KEEP_LAST="2") as settings:
        results: list[ExportResult] = []
        for _ in range(3):
            handle = await start_export(client, settings, ExportRequest(project_id="keeper"))
            results.append(await handle.result())
            await asyncio.sleep(1.1)  # keys order backups by their second: keep them apart

    first, second, third = results
    assert third.retention is not None and third.retention.pruned == [first.location]
    assert third.retention.kept == [third.location, second.location]
    assert not stored_path(first.location).exists()
    assert not stored_path(first.manifest_location).exists()
    assert stored_path(second.location).exists() and stored_path(third.location).exists()


def test_retention_on_demand_from_the_starter(stack: DevStack) -> None:
    """After the test above: two backups of `keeper` remain; keep the last one only."""
    env = {**os.environ, **stack.env, "RETENTION_KEEP_LAST": "1"}
    command = [
        sys.executable,
        str(ROOT / "starter.py"),
        "retention",
        "apply",
        "--project",
        "keeper",
    ]

    planned = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["dry_run"] and len(plan["kept"]) == 1 and len(plan["pruned"]) == 1
    assert stored_path(plan["pruned"][0]).exists()  # a dry run deletes nothing

    applied = subprocess.run(command, env=env, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["pruned"] == plan["pruned"]
    assert not stored_path(plan["pruned"][0]).exists()
    assert stored_path(plan["kept"][0]).exists()
