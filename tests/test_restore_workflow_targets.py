"""On the embedded stack, a realistic tenant (pgvector, citext, auth.uid(), an FK into public,
large objects): a backup with verify_restore passes, lists its dependencies, and
RestoreBackupWorkflow (through starter.py) restores it beside the original and, once the schema
is gone, under its own name: each compared with the live schema object by object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg

from backup.models import ExportRequest
from devstack.seed import register_project
from devstack.stack import ROOT, DevStack
from starter import start_export
from tests.catalog_compare import snapshot
from tests.realistic_schema import create_shared, create_tenant
from workflows.client import connect

TENANT = "realistic"
USER = "0190d3b2-0000-7000-8000-0000000000bb"


def restore(stack: DevStack, location: str, into: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "restore", location, "--into", into],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return result


async def test_a_realistic_tenant_backs_up_verified_and_restores_to_every_target(
    stack: DevStack,
) -> None:
    url = stack.postgres.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {TENANT} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {TENANT}_copy CASCADE")
        create_shared(conn, USER)
        create_tenant(conn, TENANT, USER)
        register_project(conn, TENANT, TENANT)
    client = await connect(stack.temporal.address, "default")
    request = ExportRequest(project_id=TENANT, verify_restore=True)
    backup = await (await start_export(client, stack.settings(), request)).result()

    assert backup.verification is not None and backup.verification.verified
    assert backup.verification.large_objects == 15
    assert backup.dependencies is not None
    assert "vector" in backup.dependencies.describe()
    assert "auth.uid()" in backup.dependencies.describe()
    live = snapshot(url, TENANT)

    copy = restore(stack, backup.location, f"{TENANT}_copy")  # beside the original
    assert copy["verified"] and copy["large_objects"] == 15
    assert any("label()" in w for w in copy["warnings"])
    assert snapshot(url, f"{TENANT}_copy", also=TENANT) == live

    with psycopg.connect(url, autocommit=True) as conn:  # the disaster: the schema is gone
        conn.execute(f"SELECT lo_unlink(body) FROM {TENANT}.documents WHERE body IS NOT NULL")
        conn.execute(f"DROP SCHEMA {TENANT} CASCADE")
    own = restore(stack, backup.location, TENANT)
    assert own["verified"] and own["schema_name"] == TENANT and own["warnings"] == []
    assert snapshot(url, TENANT) == live
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'export_backup_%'"
        ).fetchall()
    assert left == []
