"""BackupAllProjectsWorkflow on the dev server with the real worker's workers (build_workers)
against a database of its own: 12 tiny ACTIVE projects, one of them pointing to a missing
schema, and a suspended one. Pages of 5 force continue-as-new; at most 2 backups at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from backup.fleet_models import FleetProgress, FleetSummary
from backup.projects import close_kept_connections, list_active_project_ids
from backup.settings import Settings
from devstack.seed import CONTROL_PLANE_SQL, register_project
from tests.standins import running
from worker import build_workers
from workflows.fleet import BackupAllProjectsWorkflow, child_workflow_id

GOOD = [f"fleet-{i:02d}" for i in range(1, 12)]
BROKEN = "fleet-broken"  # ACTIVE, but its schema does not exist
SUSPENDED = "fleet-suspended"


@pytest.fixture
def fleet_db(scratch_db: str) -> str:
    """A platform database holding only the fleet's projects, each with one small table."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        for statement in CONTROL_PLANE_SQL:
            conn.execute(statement)
        for project in [*GOOD, SUSPENDED]:
            schema = project.replace("-", "_")
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.items AS SELECT g AS id FROM generate_series(1, 50) g"
                ).format(sql.Identifier(schema))
            )
            status = "SUSPENDED" if project == SUSPENDED else "ACTIVE"
            register_project(conn, project, schema, status=status)
        register_project(conn, BROKEN, "fleet_no_such_schema")
    return scratch_db


@pytest.fixture
def fleet_settings(fleet_db: str, tmp_path: Path, task_queue: str) -> Settings:
    return Settings(
        database_url=fleet_db,  # type: ignore[arg-type]
        temporal_task_queue=task_queue,
        host_id=f"fleet-{uuid.uuid4().hex[:6]}",
        spool_dir=tmp_path / "spool",
        local_storage_dir=tmp_path / "storage",
        notify_channels="console",
        metrics_port=0,
    )


@pytest.fixture
async def fleet_workers(
    dev_env: WorkflowEnvironment, fleet_settings: Settings
) -> AsyncIterator[Client]:
    async with running(build_workers(dev_env.client, fleet_settings)):
        yield dev_env.client


async def test_keyset_pages_list_active_projects_only(fleet_db: str) -> None:
    first = await list_active_project_ids(fleet_db, None, 5)
    rest = await list_active_project_ids(fleet_db, first[-1], 100)
    assert first + rest == sorted([*GOOD, BROKEN])
    assert await list_active_project_ids(fleet_db, rest[-1], 5) == []


async def test_listing_keeps_one_connection_and_replaces_one_the_server_closed(
    fleet_db: str,
) -> None:
    first = await list_active_project_ids(fleet_db, None, 5)
    await list_active_project_ids(fleet_db, None, 5)
    with psycopg.connect(fleet_db, autocommit=True) as admin:
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        pids = admin.execute(f"SELECT pid FROM pg_stat_activity WHERE {others}").fetchall()
        assert len(pids) == 1, pids  # kept, not one connection per call
        admin.execute("SELECT pg_terminate_backend(%s)", pids[0])
    assert await list_active_project_ids(fleet_db, None, 5) == first
    await close_kept_connections()


async def test_fleet_backs_up_every_active_project_two_at_a_time(
    fleet_workers: Client, fleet_settings: Settings
) -> None:
    client = fleet_workers
    fleet_id = f"export-backup-fleet-test-{uuid.uuid4().hex[:6]}"
    handle = await client.start_workflow(
        BackupAllProjectsWorkflow.run,
        {"max_concurrent": 2, "page_size": 5},
        id=fleet_id,
        task_queue=fleet_settings.temporal_task_queue,
    )
    summary = FleetSummary.model_validate(await handle.result())
    progress = await handle.query(BackupAllProjectsWorkflow.progress)

    active = sorted([*GOOD, BROKEN])
    assert (summary.total, summary.succeeded, summary.failed) == (12, 11, 1)
    # Over all three runs: the last one knows the earlier runs' projects through the summary.
    assert (progress.done, progress.running, progress.failed, progress.waiting) == (11, 0, 1, 0)
    assert progress.listed == 12 and not progress.more_to_list
    assert progress.line() == "done 11 · running 0 · failed 1 of 12"
    assert summary.runs == 3  # pages of 5, 5 and 2: continued as new twice
    [failure] = summary.failures
    assert failure.project_id == BROKEN
    assert "fleet_no_such_schema" in failure.error and "does not exist" in failure.error

    # One child per active project, under ids derived from the fleet's id; none for the
    # suspended one.
    children = {p: await _describe(client, child_workflow_id(fleet_id, p)) for p in active}
    done, failed = WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED
    assert {p: status for p, (status, _, _) in children.items()} == {
        p: failed if p == BROKEN else done for p in active
    }
    suspended = child_workflow_id(fleet_id, SUSPENDED)
    assert [wf async for wf in client.list_workflows(f"WorkflowId = '{suspended}'")] == []
    # Both slots were used, never more.
    assert _max_overlap([(start, close) for _, start, close in children.values()]) == 2

    # Every run of the chain replays on today's code.
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{fleet_id}'")]
    assert len(runs) == 3
    replayer = Replayer(
        workflows=[BackupAllProjectsWorkflow], data_converter=pydantic_data_converter
    )
    for run in runs:
        history = await client.get_workflow_handle(fleet_id, run_id=run.run_id).fetch_history()
        await replayer.replay_workflow(history)

    # A rerun under the same id does not back up again what is done; the failed one is retried.
    again = await client.start_workflow(
        BackupAllProjectsWorkflow.run,
        {"max_concurrent": 2, "page_size": 100},
        id=fleet_id,
        task_queue=fleet_settings.temporal_task_queue,
    )
    rerun = FleetSummary.model_validate(await again.result())
    assert (rerun.total, rerun.skipped, rerun.succeeded, rerun.failed, rerun.runs) == (
        12,
        11,
        0,
        1,
        1,
    )


async def test_invalid_fleet_input_fails_naming_the_field(
    fleet_workers: Client, fleet_settings: Settings
) -> None:
    handle = await fleet_workers.start_workflow(
        BackupAllProjectsWorkflow.run,
        {"max_concurrent": 0},
        id=f"export-backup-fleet-test-{uuid.uuid4().hex[:6]}",
        task_queue=fleet_settings.temporal_task_queue,
    )
    with pytest.raises(Exception) as caught:
        await handle.result()
    assert "max_concurrent" in str(caught.value.__cause__)


async def test_default_max_concurrent_is_sixteen_and_a_run_from_before_keeps_four(
    fleet_workers: Client, fleet_settings: Settings
) -> None:
    """No max_concurrent given: all 12 active projects of the one page run at once (the
    default is 16 since patch fleet-max-concurrent-16), and the marker is in the history so
    the run replays; histories recorded before it replay with 4 (tests/unit/test_replay.py).
    The page is listed by list_active_projects_v2 (patch fleet-typed-listing)."""
    client = fleet_workers
    fleet_id = f"export-backup-fleet-test-{uuid.uuid4().hex[:6]}"
    handle = await client.start_workflow(
        BackupAllProjectsWorkflow.run,
        {},
        id=fleet_id,
        task_queue=fleet_settings.temporal_task_queue,
    )
    summary = FleetSummary.model_validate(await handle.result())
    assert (summary.total, summary.succeeded, summary.failed, summary.runs) == (12, 11, 1, 1)
    active = sorted([*GOOD, BROKEN])
    children = [await _describe(client, child_workflow_id(fleet_id, p)) for p in active]
    # More than the old default of 4 at once: the children were all started together.
    assert _max_overlap([(start, close) for _, start, close in children]) > 4
    history = await handle.fetch_history()
    patches = [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert any(b"fleet-max-concurrent-16" in p for p in patches), patches
    # The page comes from the typed listing (one ProjectPage, patch fleet-typed-listing).
    assert any(b"fleet-typed-listing" in p for p in patches), patches
    listed = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert listed == ["list_active_projects_v2"]
    await Replayer(
        workflows=[BackupAllProjectsWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def _describe(
    client: Client, workflow_id: str
) -> tuple[WorkflowExecutionStatus | None, datetime, datetime]:
    d = await client.get_workflow_handle(workflow_id).describe()
    assert d.close_time is not None, f"{workflow_id} still running"
    return d.status, d.start_time, d.close_time


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """Most intervals open at one instant; one closing as another starts does not overlap."""
    events = sorted([(s, 1) for s, _ in intervals] + [(c, -1) for _, c in intervals])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def test_progress_line_marks_a_fleet_that_may_list_more() -> None:
    progress = FleetProgress(done=12, running=8, failed=0, waiting=80, listed=100)
    assert progress.line() == "done 12 · running 8 · failed 0 of 100+"
    progress.more_to_list = False
    assert progress.line() == "done 12 · running 8 · failed 0 of 100"
