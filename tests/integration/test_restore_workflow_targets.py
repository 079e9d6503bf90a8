"""On the embedded stack, a realistic tenant (pgvector, citext, auth.uid(), an FK into public,
large objects): a backup in every format passes verify_restore and lists its dependencies, and
RestoreBackupWorkflow (through starter.py) restores it beside the original, and (custom) under its
own name once the schema is gone: each compared with the live schema object by object, row by
row, with no scratch database or staging schema left. The same in every format for a copy of
the tenant without comments of its own, whose dump skips pg_dump's comment scan while the
database's other schemas carry comments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from backup.catalog import snapshot_facts
from backup.models import DumpFormat, ExportRequest, ExportResult
from backup.pgconn import read_only_transaction
from backup.pgdump import skipped_scans
from backup.restore import drop_schema
from client import connect, start_export
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack
from reliability.restore_crashes import leftovers
from tests.catalog_compare import snapshot
from tests.realistic_schema import create_shared, create_tenant

TENANT = "realistic"
BARE = "realistic_bare"  # the same objects and rows, no comment of its own
USER = "0190d3b2-0000-7000-8000-0000000000bb"


def restore(stack: DevStack, location: str, into: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "restore", location, "--into", into, "--json"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return result


@pytest.fixture(scope="module")
def realistic(stack: DevStack) -> str:
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {TENANT} CASCADE")
        create_shared(conn, USER)
        create_tenant(conn, TENANT, USER)
        register_project(conn, TENANT, TENANT)
    return TENANT


@pytest.fixture(scope="module")
def bare(stack: DevStack, realistic: str) -> str:
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {BARE} CASCADE")
        create_tenant(conn, BARE, USER)
        conn.execute(f"COMMENT ON TABLE {BARE}.members IS NULL")
        conn.execute(f"COMMENT ON COLUMN {BARE}.members.full_name IS NULL")
        conn.execute(f"COMMENT ON MATERIALIZED VIEW {BARE}.monthly IS NULL")
        register_project(conn, BARE, BARE)
    with read_only_transaction(stack.postgres.url()) as conn:
        facts = snapshot_facts(conn, BARE)
    assert "--no-comments" in skipped_scans(facts)  # while the realistic tenant has comments
    return BARE


async def backup_of(stack: DevStack, fmt: DumpFormat, tenant: str = TENANT) -> ExportResult:
    client = await connect(stack.temporal.address, "default")
    request = ExportRequest(project_id=tenant, verify_restore=True, format=fmt)
    return await (await start_export(client, stack.settings(), request)).result()


@pytest.mark.parametrize("fmt", list(DumpFormat))
async def test_every_format_backs_up_verified_and_restores_beside_the_original(
    stack: DevStack, realistic: str, fmt: DumpFormat
) -> None:
    await backs_up_verified_and_restores_beside_the_original(stack, realistic, fmt)


@pytest.mark.parametrize("fmt", list(DumpFormat))
async def test_without_comments_of_its_own_too(stack: DevStack, bare: str, fmt: DumpFormat) -> None:
    await backs_up_verified_and_restores_beside_the_original(stack, bare, fmt)


async def backs_up_verified_and_restores_beside_the_original(
    stack: DevStack, tenant: str, fmt: DumpFormat
) -> None:
    url = stack.postgres.url()
    backup = await backup_of(stack, fmt, tenant)

    assert backup.verification is not None and backup.verification.verified
    assert backup.verification.large_objects == 15
    assert backup.dependencies is not None
    assert "vector" in backup.dependencies.describe()
    assert "auth.uid()" in backup.dependencies.describe()
    live = snapshot(url, tenant)
    copy = f"{tenant}_{fmt.value}"
    drop_schema(url, copy)
    try:
        restored = restore(stack, backup.location, copy)
        assert restored["verified"] and restored["large_objects"] == 15
        assert any("label()" in w for w in restored["warnings"])
        assert snapshot(url, copy, also=tenant) == live
        assert snapshot(url, tenant) == live
    finally:
        drop_schema(url, copy)
    assert leftovers(url) == []


async def test_the_schema_restores_under_its_own_name_once_it_is_gone(
    stack: DevStack, realistic: str
) -> None:
    url = stack.postgres.url()
    backup = await backup_of(stack, DumpFormat.CUSTOM)
    live = snapshot(url, TENANT)
    with psycopg.connect(url, autocommit=True) as conn:  # the disaster: the schema is gone
        conn.execute(f"SELECT lo_unlink(body) FROM {TENANT}.documents WHERE body IS NOT NULL")
        conn.execute(f"DROP SCHEMA {TENANT} CASCADE")

    own = restore(stack, backup.location, TENANT)

    assert own["verified"] and own["schema_name"] == TENANT and own["warnings"] == []
    assert snapshot(url, TENANT) == live
    assert leftovers(url) == []
