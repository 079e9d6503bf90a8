"""Following a fleet backup as a person does (`starter.py fleet --follow`, `starter.py follow`):
while it runs, done / running / failed and the workflow's current details; at the end, its
table (the real fleet workflow on the dev server, its queries are reliable there, with
stand-in children that finish only when told); and a restore followed to its table."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from backup.fleet_models import FleetRequest, FleetSummary, ProjectPage
from backup.models import ExportRequest
from backup.settings import Settings
from client import FLEET, TRANSFER, connect, follow, start_export, start_fleet
from client.progress import fleet_state
from client.render import fleet_table
from devstack.stack import ROOT, DevStack
from tests.standins import harness, running
from workflows.fleet import BackupAllProjectsWorkflow, child_workflow_id

PROJECTS = ["alpha", "broken", "gamma"]


@activity.defn(name="list_active_projects_v2")
async def list_active_projects(page: ProjectPage) -> list[str]:
    return [] if page.after else PROJECTS


@workflow.defn(name="ExportBackupWorkflow")
class HeldBackup:
    """A backup that ends when signalled: `broken` fails, the others succeed."""

    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        await workflow.wait_condition(lambda: self.released)
        if request["project_id"] == "broken":
            raise ApplicationError("schema broken does not exist", non_retryable=True)
        return {}

    @workflow.signal
    def release(self) -> None:
        self.released = True


async def eventually_state(handle: Any, expected: str) -> str:
    for _ in range(100):
        text = (await fleet_state(handle)).text
        if text.startswith(expected):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"the fleet never showed {expected!r}; last: {text!r}")


async def release(client: Client, fleet_id: str, project: str) -> None:
    await client.get_workflow_handle(child_workflow_id(fleet_id, project)).signal(
        HeldBackup.release
    )


async def test_a_fleet_backup_shows_done_running_and_failed_then_its_table(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = dev_env.client
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BackupAllProjectsWorkflow, HeldBackup],
        activities=[list_active_projects],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    settings = Settings(temporal_task_queue=task_queue)
    async with running([worker]):
        handle = await start_fleet(client, settings, FleetRequest(max_concurrent=2))
        text = await eventually_state(handle, "done 0, running 2, failed 0")
        assert "Running: alpha, broken" in text  # the workflow's current details, bold gone

        await release(client, handle.id, "broken")
        await eventually_state(handle, "done 0, running 2, failed 1")  # gamma took its slot
        await release(client, handle.id, "alpha")
        await eventually_state(handle, "done 1, running 1, failed 1")

        shown = Console(
            file=io.StringIO(), record=True, width=80, force_terminal=True, force_interactive=True
        )
        following = asyncio.create_task(follow(handle, FLEET, shown))
        await asyncio.sleep(1.5)  # a few polls with the progress line on screen
        await release(client, handle.id, "gamma")
        summary = FleetSummary.model_validate(await following)

    assert (summary.total, summary.succeeded, summary.failed) == (3, 2, 1)
    assert "done 1, running 1, failed 1" in shown.export_text()
    table = Console(record=True, width=80)
    table.print(fleet_table(summary, f"http://ui/namespaces/default/workflows/{handle.id}"))
    text = table.export_text()
    assert "3: 2 backed up, 1 failed" in text and "broken: schema broken does not exist" in text


async def test_following_a_backup_shows_its_step_bytes_and_rate(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The export view: the BackupStep search attribute, the bytes the running activity last
    heartbeated and the rate, from the server's description (a dump held by its stand-in)."""
    h = harness(dev_env, task_queue)
    h.fakes.block_dump = True
    shown = Console(
        file=io.StringIO(), record=True, width=100, force_terminal=True, force_interactive=True
    )
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme"})
        await h.fakes.dump_started.wait()
        following = asyncio.create_task(follow(handle, TRANSFER, shown))
        await asyncio.sleep(3)  # heartbeats reach the server at most every second
        h.fakes.block_dump = False
        result = await following
    assert result.location.endswith(".dump.zst")
    text = shown.export_text()
    # e.g. "dumping ━━━━ 655.4/? kB 580.8 kB/s 0:00:01": step, bytes of no known total, rate
    assert re.search(r"dumping ━+ [0-9.]+/\? [kM]B [0-9.]+ [kM]B/s", text), text[-300:]


async def test_restore_follow_ends_with_a_table_naming_the_location_whole(stack: DevStack) -> None:
    """`starter.py restore --follow` piped (80 columns): the progress goes to stderr, the result
    is the restore's table, not JSON."""
    client = await connect(stack.temporal.address, "default")
    backup = await (
        await start_export(client, stack.settings(), ExportRequest(project_id="acme"))
    ).result()
    schema = f"acme_followed_{uuid.uuid4().hex[:6]}"
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "starter.py"),
                "restore",
                backup.location,
                "--into",
                schema,
                "--follow",
            ],
            env={**os.environ, **stack.env, "COLUMNS": "80"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("started restore-backup-")
        assert not done.stdout.lstrip().startswith("{")
        flat = "".join(ch for ch in done.stdout if ch not in "│┃║|\n ")
        assert backup.location in flat and schema in flat
        assert "rows match the manifest" in done.stdout
        assert max(len(line) for line in done.stdout.splitlines()) <= 80

        # status of that restore: its result, as the restore's JSON.
        restore_id = done.stderr.split()[1]
        status = subprocess.run(
            [sys.executable, str(ROOT / "starter.py"), "status", restore_id, "--json"],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        restored = json.loads(status.stdout)
        assert (restored["schema_name"], restored["verified"]) == (schema, True)
    finally:
        with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
