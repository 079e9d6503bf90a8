"""Record representative workflow histories into tests/histories/ for the replay test.

Runs real workflows on a fresh dev stack (its worker) and saves each history as the JSON that
`temporal workflow show --output json` prints and `WorkflowHistory.from_json` reads:

    .venv/bin/python -m reliability.record_histories            # the default set below
    .venv/bin/python -m reliability.record_histories --fleet    # also BackupAllProjectsWorkflow

Existing files are never overwritten (a history recorded on older code is the point of the
test); delete one by hand to record it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from temporalio.client import Client, WorkflowFailureError

from client import connect
from devstack.stack import DevStack
from reliability.harness import own_stack

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"


async def record(client: Client, name: str, workflow: str, body: Any, queue: str) -> Any:
    """Run a workflow to its end and save its history as tests/histories/<name>.json."""
    target = HISTORIES / f"{name}.json"
    # The file's stem is the workflow id the replay test replays it under: workflows that derive
    # ids from their own (fleet children, safety backups) replay only under the recorded one.
    handle = await client.start_workflow(workflow, body, id=name, task_queue=queue)
    failed: WorkflowFailureError | None = None
    try:
        result = await asyncio.wait_for(handle.result(), timeout=600)
    except WorkflowFailureError as err:  # a failing run is recorded too, then re-raised
        failed, result = err, None
    history = await handle.fetch_history()
    if target.exists():
        print(f"  {target.name}: exists, kept")
    else:
        target.write_text(json.dumps(json.loads(history.to_json()), indent=2) + "\n")
        print(f"  {target.name}: {len(history.events)} events")
    if failed is not None:
        raise failed
    return result


async def record_store_step(client: Client, stack: DevStack, folder: Path, queue: str) -> None:
    """The store-step patch: dump → store (verify, upload, remove the spool), no cleanup after
    a success; with verify_restore, dump → verify → test restore → store; and a failure, whose
    cleanup removes the spool (cleanup_spool_v2)."""
    await record(
        client, "succeeded_store_step", "ExportBackupWorkflow", {"project_id": "acme"}, queue
    )
    verified = await record(
        client,
        "succeeded_store_step_verify_restore",
        "ExportBackupWorkflow",
        {"project_id": "acme", "verify_restore": True},
        queue,
    )
    assert verified["verification"]["verified"], verified
    # A cap no dump fits under: the dump fails (BackupTooLarge), the cleanup and the failure
    # notification run.
    small_queue = "record-too-large"
    worker = stack.spawn_worker(
        folder / "too-large-worker.log",
        {
            "TEMPORAL_TASK_QUEUE": small_queue,
            "HOST_ID": "record-too-large",
            "METRICS_PORT": "0",
            "SPOOL_DIR": str(folder / "spool-too-large"),
            "BACKUP_MAX_BYTES": "64",
        },
    )
    try:
        with contextlib.suppress(WorkflowFailureError):  # recorded by then: failing is the point
            await record(
                client,
                "failed_store_step_too_large",
                "ExportBackupWorkflow",
                {"project_id": "acme"},
                small_queue,
            )
    finally:
        worker.terminate()
        worker.wait(timeout=90)


async def record_small_schema(client: Client, stack: DevStack, folder: Path, queue: str) -> None:
    """The small-schema patch: one local activity dumps and stores the (small) tenant; and a
    dump over the size cap, which that activity cleans up after."""
    done = await record(
        client, "succeeded_small_schema", "ExportBackupWorkflow", {"project_id": "acme"}, queue
    )
    assert done["location"], done
    (folder / "small-too-large").mkdir()
    with (
        stack.own_worker(
            folder / "small-too-large", "record-small-too-large", BACKUP_MAX_BYTES="64"
        ) as s,
        contextlib.suppress(WorkflowFailureError),
    ):  # recorded by then: failing is the point
        await record(
            client,
            "failed_small_schema_too_large",
            "ExportBackupWorkflow",
            {"project_id": "acme"},
            s.temporal_task_queue,
        )


async def record_all(stack: DevStack, folder: Path, fleet: bool) -> None:
    client = await connect(stack.temporal.address, "default")
    queue = stack.settings().temporal_task_queue
    await record_small_schema(client, stack, folder, queue)
    await record_store_step(client, stack, folder, queue)
    # Local activities for the short steps (patched "local-steps"), success and failure.
    await record(
        client, "succeeded_local_steps", "ExportBackupWorkflow", {"project_id": "acme"}, queue
    )
    with contextlib.suppress(WorkflowFailureError):  # recorded by then: failing is the point
        await record(
            client,
            "failed_local_steps_inactive",
            "ExportBackupWorkflow",
            {"project_id": "initech"},
            queue,
        )
    verified = await record(
        client,
        "succeeded_verify_restore",
        "ExportBackupWorkflow",
        {"project_id": "acme", "verify_restore": True},
        queue,
    )
    assert verified["verification"]["verified"], verified
    await record(
        client,
        "restore_into_new_schema",
        "RestoreBackupWorkflow",
        {"location": verified["location"], "into_schema": "acme_recorded"},
        queue,
    )
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier("acme_recorded")))
    # Replace mode: safety backup (a child), then the typed swap (patch restore-typed-swap).
    replaced = await record(
        client,
        "restore_replace_typed_swap",
        "RestoreBackupWorkflow",
        {"location": verified["location"], "replace": True, "confirm_replace": True},
        queue,
    )
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(replaced["previous_schema"]))
        )

    # Retention that prunes: a worker keeping the newest backup only, and two backups.
    retention_queue = "record-retention"
    worker = stack.spawn_worker(
        folder / "retention-worker.log",
        {
            "TEMPORAL_TASK_QUEUE": retention_queue,
            "HOST_ID": "record-retention",
            "METRICS_PORT": "0",
            "SPOOL_DIR": str(folder / "spool"),
            "RETENTION_KEEP_LAST": "1",
        },
    )
    try:
        body = {"project_id": "globex"}
        first = await client.execute_workflow(
            "ExportBackupWorkflow",
            body,
            id=f"record-{uuid.uuid4().hex[:8]}",
            task_queue=retention_queue,
        )
        await asyncio.sleep(1.1)  # backups are ordered by their key's one-second timestamp
        pruned = await record(
            client, "succeeded_retention_pruned", "ExportBackupWorkflow", body, retention_queue
        )
        assert first["location"] in pruned["retention"]["pruned"], pruned["retention"]
    finally:
        worker.terminate()
        worker.wait(timeout=90)

    if fleet:
        summary = await record(
            client, "fleet_all_projects", "BackupAllProjectsWorkflow", {"page_size": 2}, queue
        )
        print(f"  fleet: {summary}")
        # The default max_concurrent of 16 (patch fleet-max-concurrent-16), in one run: a
        # continued run gets max_concurrent explicitly and never asks for the patch.
        summary = await record(
            client,
            "fleet_default_concurrency",
            "BackupAllProjectsWorkflow",
            {"page_size": 50},
            queue,
        )
        print(f"  fleet: {summary}")
        # The page listed through list_active_projects_v2 (patch fleet-typed-listing): the last
        # of two runs (continue-as-new) is kept, a typed listing after a cursor.
        summary = await record(
            client, "fleet_typed_listing", "BackupAllProjectsWorkflow", {"page_size": 2}, queue
        )
        print(f"  fleet: {summary}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", action="store_true", help="record BackupAllProjectsWorkflow")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="record-histories-") as home:
        stack = own_stack(Path(home, "stack"))
        with stack:
            asyncio.run(record_all(stack, Path(home), args.fleet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
