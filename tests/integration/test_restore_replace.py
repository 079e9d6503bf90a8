"""Restore in place of the project's schema: refused without confirmation, and with it a safety
backup first, then one atomic swap that keeps the replaced schema; tampered backups refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import psycopg
import pytest
from temporalio.client import Client, WorkflowFailureError

from backup.download import download
from backup.models import ExportRequest, ExportResult
from backup.restore import row_counts
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack
from workflows.restore_backup import RestoreBackupWorkflow

PROJECT = "ledger"


@pytest.fixture(scope="module")
def ledger(stack: DevStack) -> str:
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS ledger CASCADE")
        conn.execute("CREATE SCHEMA ledger")
        conn.execute("CREATE TABLE ledger.entries AS SELECT g AS id FROM generate_series(1, 500) g")
        conn.execute("CREATE TABLE ledger.accounts AS SELECT g AS id FROM generate_series(1, 7) g")
        register_project(conn, PROJECT, "ledger")
    return PROJECT


@pytest.fixture
async def client(stack: DevStack) -> Client:
    return await connect(stack.temporal.address, "default")


async def backup_of(stack: DevStack, client: Client, project: str) -> ExportResult:
    return await (
        await start_export(client, stack.settings(), ExportRequest(project_id=project))
    ).result()


def starter(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "restore", "--json", *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_replace_needs_confirmation_then_swaps_after_a_safety_backup(
    stack: DevStack, client: Client, ledger: str, tmp_path: Path
) -> None:
    url = stack.postgres.url()
    backup = await backup_of(stack, client, ledger)
    good = row_counts(url, "ledger")
    with psycopg.connect(url, autocommit=True) as conn:  # "my project's data is gone"
        conn.execute("DELETE FROM ledger.entries WHERE id > 20")
    damaged = row_counts(url, "ledger")

    refused = starter(stack, backup.location, "--replace")
    assert refused.returncode == 2 and "confirm_replace" in refused.stdout + refused.stderr
    with pytest.raises(WorkflowFailureError) as caught:  # the same refusal from any client
        await client.execute_workflow(
            RestoreBackupWorkflow.run,
            {"location": backup.location, "replace": True},
            id=f"restore-unconfirmed-{uuid.uuid4().hex[:6]}",
            task_queue=stack.settings().temporal_task_queue,
        )
    assert "confirm_replace" in str(caught.value.cause)
    assert row_counts(url, "ledger") == damaged  # nothing happened

    done = starter(stack, backup.location, "--replace", "--confirm-replace")

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["verified"] and result["schema_name"] == "ledger"
    assert row_counts(url, "ledger") == good  # the data is back
    kept = result["previous_schema"]
    assert kept.startswith("ledger_before_restore_")
    assert row_counts(url, kept) == damaged  # the replaced schema is kept, not dropped
    safety = await download(result["safety_backup_location"], tmp_path / "safety", stack.settings())
    assert safety.row_counts == damaged  # the safety backup holds the replaced state
    with psycopg.connect(url) as conn:
        staged = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger_restore_%'"
        ).fetchall()
    assert staged == []


async def test_a_tampered_backup_is_refused_and_nothing_is_restored(
    stack: DevStack, client: Client, ledger: str
) -> None:
    backup = await backup_of(stack, client, ledger)
    artifact = Path(unquote(urlparse(backup.location).path))
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    schema = f"ledger_tampered_{uuid.uuid4().hex[:6]}"

    done = starter(stack, backup.location, "--into", schema)

    assert done.returncode == 1
    output = (done.stdout + done.stderr).lower()
    assert "sha-256" in output or "checksum" in output, output
    with psycopg.connect(stack.postgres.url()) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
        assert row.fetchone() == (0,)
