"""One restore cell of the crash matrix in `make test` (all of them: `make reliability`): a
worker killed while the data is copied into the staging schema; another host finishes the
restore, verified, with one copy and no orphan database or schema."""

from __future__ import annotations

from pathlib import Path

from backup.models import ExportRequest
from client import connect, start_export
from devstack.stack import DevStack
from reliability.crashes import PROJECT, seed_project
from reliability.restore_crashes import CELLS, run_cell


async def test_a_worker_killed_while_copying_leaves_a_verified_restore_and_no_orphans(
    stack: DevStack, tmp_path: Path
) -> None:
    seed_project(stack.postgres.url())
    client = await connect(stack.temporal.address, "default")
    backup = await (
        await start_export(client, stack.settings(), ExportRequest(project_id=PROJECT))
    ).result()
    copying = next(c for c in CELLS if c.name == "copying")

    row = await run_cell(stack, backup.location, copying, "other", tmp_path)

    assert row.passed, row.detail
    assert "running (data)" in row.detail
