"""export, status, list, fleet and follow: start backups and watch them."""

from __future__ import annotations

import argparse
import re
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from backup.errors import InvalidRequest, error_type
from backup.fleet_models import FleetRequest, FleetSummary
from backup.models import (
    PROJECT_ID_PATTERN,
    Compression,
    DumpFormat,
    ExportRequest,
    ExportResult,
    RestoreResult,
)
from backup.settings import Settings
from client.cli.output import fail, say, show, show_json, show_listing
from client.connection import connect_with
from client.errors import not_found_as, root_cause
from client.progress import FLEET, TRANSFER, View, follow
from client.render import Column, fleet_table, restore_table, result_table, workflow_link
from client.reports import NO_RUN, failure_report
from client.starting import start_export, start_fleet
from workflows.export_backup import ExportBackupWorkflow
from workflows.inputs import problems
from workflows.search_attributes import BACKUP_STEP


async def export(args: argparse.Namespace, settings: Settings) -> int:
    compress = not args.no_compress and args.compression != Compression.NONE
    try:
        request = ExportRequest(
            project_id=args.project,
            format=args.format,
            compress=compress,
            compression=args.compression if compress else Compression.ZSTD,
            notify_email=args.notify_email,
            request_id=args.request_id,
            verify_restore=args.verify_restore,
        )
    except ValidationError as err:
        fail("invalid request", problems(err))
        if args.json:
            failure = {"status": "INVALID_REQUEST", "error_type": error_type(InvalidRequest)}
            show_json({**NO_RUN, **failure, "message": problems(err)})
        return 2
    client = await connect_with(settings)
    handle = await start_export(client, settings, request)
    started(handle, client, settings)
    if not args.follow:
        if args.json:
            show_json({"workflow_id": handle.id, "run_id": handle.result_run_id})
        return 0
    return await watch(handle, client, settings, args.json)


def started(handle: WorkflowHandle[Any, Any], client: Client, settings: Settings) -> None:
    say(f"started {handle.id}")
    say(f"Web UI: {workflow_link(settings.temporal_ui_url, client.namespace, handle.id)}")


async def fleet(args: argparse.Namespace, settings: Settings) -> int:
    try:
        request = FleetRequest(
            max_concurrent=args.max_concurrent,
            format=args.format,
            verify_restore=args.verify_restore,
        )
    except ValidationError as err:
        fail("invalid request", problems(err))
        return 2
    client = await connect_with(settings)
    handle = await start_fleet(client, settings, request)
    started(handle, client, settings)
    if not args.follow:
        return 0
    return await watch(handle, client, settings, args.json)


def view_of(workflow_type: str) -> View:
    return FLEET if workflow_type == "BackupAllProjectsWorkflow" else TRANSFER


FAILED = {
    "ExportBackupWorkflow": "backup failed",
    "RestoreBackupWorkflow": "restore failed",
    "BackupAllProjectsWorkflow": "fleet backup failed",
}


def ours(workflow_id: str, kind: str) -> bool:
    """One of this project's workflows; else said so (the starter can not render it)."""
    if kind in FAILED:
        return True
    fail(f"{workflow_id} is a {kind}", "not a backup, restore or fleet backup")
    return False


async def watch(
    handle: WorkflowHandle[Any, Any],
    client: Client,
    settings: Settings,
    as_json: bool,
    live: bool = True,
    failure_json: bool = False,
) -> int:
    """Wait for the workflow's end (showing progress when `live`); print its result as its
    type's table, or JSON (a failure as JSON also with `failure_json`)."""
    kind = (await handle.describe()).workflow_type
    if not ours(handle.id, kind):
        return 2
    try:
        result = await (follow(handle, view_of(kind)) if live else handle.result())
    except WorkflowFailureError as err:
        fail(FAILED[kind], root_cause(err))
        if as_json or failure_json:
            show_json(await failure_report(handle, err))
        return 1
    link = workflow_link(settings.temporal_ui_url, client.namespace, handle.id)
    if kind == "BackupAllProjectsWorkflow":
        summary = FleetSummary.model_validate(result)
        if as_json:
            show_json(summary)
        else:
            show(fleet_table(summary, link))
        return 1 if summary.failed else 0
    if kind == "RestoreBackupWorkflow":
        restored = RestoreResult.model_validate(result)
        if as_json:
            show_json(restored)
        else:
            show(restore_table(restored, link))
        return 0 if restored.verified else 1
    backup = ExportResult.model_validate(result)
    if as_json:
        show_json(backup)
    else:
        show(result_table(backup, settings.temporal_ui_url, settings.temporal_namespace))
    return 0


async def follow_command(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect_with(settings)
    handle = client.get_workflow_handle(args.workflow_id)
    with not_found_as(f"workflow {args.workflow_id!r} in namespace {client.namespace}", LIST):
        await handle.describe()
    return await watch(handle, client, settings, args.json)


LIST = "starter.py list"


async def status(args: argparse.Namespace, settings: Settings) -> int:
    """A running backup, restore or fleet as JSON (step, bytes, details); a finished one as
    its result table (JSON with --json); a failed one as the failure report (always JSON)."""
    client = await connect_with(settings)
    handle = client.get_workflow_handle(args.workflow_id)
    with not_found_as(f"workflow {args.workflow_id!r} in namespace {client.namespace}", LIST):
        description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return await watch(handle, client, settings, args.json, live=False, failure_json=True)
    kind = description.workflow_type
    if not ours(handle.id, kind):
        return 2
    state = await view_of(kind).poll(handle)
    info: dict[str, Any] = {"status": "RUNNING", "workflow_type": kind}
    if kind == "ExportBackupWorkflow":
        progress = await handle.query(ExportBackupWorkflow.progress)
        info["progress"] = progress.model_dump(mode="json") if progress else None
    show_json(
        {**info, "state": state.text, "live_bytes": state.done, "live_total_bytes": state.total}
    )
    return 0


LIST_COLUMNS = (
    Column("WORKFLOW ID"),
    Column("STATUS"),
    Column("STARTED (UTC)", drop=2),
    Column("STEP", drop=1),
)


async def list_backups(args: argparse.Namespace, settings: Settings) -> int:
    query = "WorkflowType = 'ExportBackupWorkflow'"
    if args.project:
        # The pattern admits no quote, so the value can not break out of the literal.
        if re.fullmatch(PROJECT_ID_PATTERN, args.project) is None:
            fail("invalid project id", repr(args.project))
            return 2
        query += f" AND ProjectId = '{args.project}'"
    client = await connect_with(settings)
    found = [wf async for wf in client.list_workflows(query, limit=args.limit)]
    rows = [
        {
            "workflow_id": wf.id,
            "status": wf.status.name if wf.status else "?",
            "started_at": wf.start_time.isoformat(),
            "step": wf.typed_search_attributes.get(BACKUP_STEP) or "",
        }
        for wf in found
    ]
    if args.json:
        show_json(rows)
        return 0
    cells = [
        [r["workflow_id"], r["status"], f"{wf.start_time:%Y-%m-%d %H:%M:%S}", r["step"]]
        for r, wf in zip(rows, found, strict=True)
    ]
    show_listing(LIST_COLUMNS, cells)
    return 0


def add(sub: Any) -> None:
    p = sub.add_parser("export", help="back up one project")
    p.set_defaults(run=export)
    p.add_argument("--project", required=True)
    p.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    p.add_argument(
        "--compression",
        choices=[c.value for c in Compression],
        default=Compression.ZSTD.value,
        help="none stores pg_dump's output as is (like --no-compress)",
    )
    p.add_argument("--no-compress", action="store_true")
    p.add_argument("--notify-email")
    p.add_argument("--request-id", help="idempotency key: the same id never runs twice")
    p.add_argument(
        "--verify-restore",
        action="store_true",
        help="test-restore into a scratch database before uploading",
    )
    p.add_argument("--follow", action="store_true", help="show progress until the result")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("fleet", help="back up every ACTIVE project now")
    p.set_defaults(run=fleet)
    p.add_argument("--max-concurrent", type=int, default=4, help="backups at once")
    p.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    p.add_argument("--verify-restore", action="store_true", help="test-restore each backup")
    p.add_argument("--follow", action="store_true", help="show done / running / failed")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("follow", help="watch a running backup, restore or fleet backup")
    p.set_defaults(run=follow_command)
    p.add_argument("workflow_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("status", help="state or result of a backup, restore or fleet backup")
    p.set_defaults(run=status)
    p.add_argument("workflow_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="recent backups")
    p.set_defaults(run=list_backups)
    p.add_argument("--project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
