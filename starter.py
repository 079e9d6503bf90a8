"""Start, follow and list backups.

python starter.py export --project acme [--format custom] [--compression zstd] [--follow] [--json]
python starter.py status WORKFLOW_ID [--json]
python starter.py list [--project acme]
python starter.py download LOCATION -o FILE [--verify-key PUB.pem] [--require-signature]
python starter.py schedule create --project acme --cron "0 2 * * *" --timezone Europe/Berlin
python starter.py schedule update ID|--project acme|--all [--cron ...] [--verify-restore] ...
python starter.py schedule list | describe ID | pause ID | unpause ID | trigger ID | delete ID
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from backup.download import download, verify_key_pem
from backup.encryption import decrypt_file
from backup.errors import BackupError, ConfigurationError
from backup.fleet_models import FleetRequest
from backup.keys import generate_keys
from backup.models import (
    PROJECT_ID_PATTERN,
    Compression,
    DumpFormat,
    ExportRequest,
    ExportResult,
    RestoreRequest,
)
from backup.prune import apply_retention
from backup.settings import Settings
from backup.storage import open_storage
from workflows import schedules
from workflows.client import connect_with, exit_without_finalizing, workflow_id_for
from workflows.export_backup import ExportBackupWorkflow
from workflows.inputs import problems
from workflows.restore_backup import RestoreBackupWorkflow
from workflows.search_attributes import BACKUP_STEP, PROJECT_ID

console = Console(stderr=True)


async def start_export(
    client: Client, settings: Settings, request: ExportRequest
) -> WorkflowHandle[Any, ExportResult]:
    """Start the backup of one project. A repeated request_id joins the running backup, or
    returns the finished one (a failed one is started again)."""
    workflow_id = workflow_id_for(request.project_id, request.request_id)
    try:
        return await client.start_workflow(
            ExportBackupWorkflow.run,
            request.model_dump(mode="json", exclude_none=True),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PROJECT_ID, request.project_id)]
            ),
            static_summary=f"Export backup of project {request.project_id} ({request.format})",
        )
    except WorkflowAlreadyStartedError as done:
        return client.get_workflow_handle(workflow_id, run_id=done.run_id, result_type=ExportResult)


async def live_bytes(handle: WorkflowHandle[Any, Any]) -> tuple[int, int | None]:
    """Bytes done (and total, when known) from the running activity's last heartbeat."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await handle._client.data_converter.decode(pending.heartbeat_details.payloads)
            if values and isinstance(values[0], dict):
                return int(values[0].get("bytes") or 0), values[0].get("total_bytes")
    return 0, None


async def follow(handle: WorkflowHandle[Any, ExportResult]) -> ExportResult:
    """Show step and bytes until the result arrives."""
    result_task = asyncio.create_task(handle.result())
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        while not result_task.done():
            try:
                state = await handle.query(ExportBackupWorkflow.progress)
                done, total = await live_bytes(handle)
                if state is not None:
                    bar.update(task, description=state.step.value, completed=done, total=total)
            except RPCError:
                pass  # the workflow may have just closed; the result tells
            await asyncio.wait([result_task], timeout=0.5)
    return await result_task


def result_table(result: ExportResult, ui_url: str, namespace: str) -> Table:
    table = Table(title=f"Backup of project {result.project_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = {
        "location": result.location,
        "manifest": result.manifest_location,
        "size": f"{result.size_bytes:,} bytes ({result.raw_bytes:,} before compression)",
        "sha256": result.sha256,
        "tables": str(result.table_count),
        "format": f"{result.format} / {result.compression}",
        "schema": result.schema_name,
        "duration": f"{result.duration_seconds:.1f} s",
        "test restore": result.verification.describe() if result.verification else "not asked",
        "retention": retention_line(result),
        "dependencies": result.dependencies.describe() if result.dependencies else "not recorded",
        "notifications": "\n".join(
            f"{n.channel}: {n.status}" + (f" ({n.error})" if n.error else "")
            for n in result.notifications
        ),
        "workflow": f"{ui_url}/namespaces/{namespace}/workflows/{result.workflow_id}/"
        f"{result.run_id}/history",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def retention_line(result: ExportResult) -> str:
    r = result.retention
    if r is None:
        return "not run"
    if r.skipped_reason or r.errors:
        return "; ".join([*([r.skipped_reason] if r.skipped_reason else []), *r.errors])
    return f"{r.policy}: kept {len(r.kept)}, pruned {len(r.pruned)}"


def print_result(result: ExportResult, settings: Settings, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        Console().print(result_table(result, settings.temporal_ui_url, settings.temporal_namespace))


async def cmd_export(client: Client, settings: Settings, args: argparse.Namespace) -> int:
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
        console.print(f"[red]invalid request:[/red] {problems(err)}")
        if args.json:
            failure = {"status": "INVALID_REQUEST", "error_type": "InvalidRequest"}
            print(json.dumps({**NO_RUN, **failure, "message": problems(err)}, indent=2))
        return 2
    handle = await start_export(client, settings, request)
    ui = f"{settings.temporal_ui_url}/namespaces/{client.namespace}/workflows/{handle.id}"
    console.print(f"started {handle.id}\nWeb UI: {ui}")
    if not args.follow:
        if args.json:
            print(json.dumps({"workflow_id": handle.id, "run_id": handle.result_run_id}))
        return 0
    try:
        result = await follow(handle)
    except WorkflowFailureError as err:
        console.print(f"[red]backup failed:[/red] {root_cause(err)}")
        if args.json:
            print(json.dumps(await failure_report(handle, err), indent=2))
        return 1
    print_result(result, settings, args.json)
    return 0


# The keys of failure_report, for a failure before any workflow ran.
NO_RUN: dict[str, Any] = dict.fromkeys(
    ("workflow_id", "run_id", "status", "error_type", "message", "failed_step")
)


async def failure_report(
    handle: WorkflowHandle[Any, Any], err: WorkflowFailureError
) -> dict[str, Any]:
    """What a script needs from a failed backup; BackupFailed carries the step and the root
    error type in its details (workflows/export_backup.py)."""
    cause = err.cause
    details: dict[str, Any] = {}
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        details = cause.details[0]
    status, run_id = None, handle.result_run_id
    with contextlib.suppress(RPCError):  # the report must not fail on a second server error
        description = await handle.describe()
        status = description.status.name if description.status else None
        run_id = description.run_id
    default_type = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
    return {
        "workflow_id": handle.id,
        "run_id": run_id,
        "status": status,
        "error_type": details.get("error_type") or default_type,
        "message": str(cause),
        "failed_step": details.get("failed_step"),
    }


async def cmd_status(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    handle = client.get_workflow_handle(args.workflow_id, result_type=ExportResult)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        console.print(
            f"no workflow {args.workflow_id!r} in namespace {client.namespace} "
            "(see: starter.py list)",
            markup=False,
            soft_wrap=True,
        )
        return 1
    status = description.status
    if status == WorkflowExecutionStatus.COMPLETED:
        print_result(await handle.result(), settings, args.json)
        return 0
    if status == WorkflowExecutionStatus.RUNNING:
        state = await handle.query(ExportBackupWorkflow.progress)
        done, total = await live_bytes(handle)
        info: dict[str, Any] = {
            "status": "RUNNING",
            "progress": state.model_dump(mode="json") if state else None,
            "live_bytes": done,
            "live_total_bytes": total,
        }
        print(json.dumps(info, indent=2))
        return 0
    try:
        await handle.result()
    except WorkflowFailureError as err:
        print(json.dumps(await failure_report(handle, err), indent=2))
    return 1


async def cmd_list(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    query = "WorkflowType = 'ExportBackupWorkflow'"
    if args.project:
        # The pattern admits no quote, so the value can not break out of the literal.
        if not _valid_project_id(args.project):
            console.print(f"[red]invalid project id:[/red] {args.project!r}")
            return 2
        query += f" AND ProjectId = '{args.project}'"
    rows = [("WORKFLOW ID", "STATUS", "STARTED (UTC)", "STEP")]
    async for wf in client.list_workflows(query, limit=args.limit):
        step = wf.typed_search_attributes.get(BACKUP_STEP)
        status = wf.status.name if wf.status else "?"
        rows.append((wf.id, status, f"{wf.start_time:%Y-%m-%d %H:%M:%S}", step or ""))
    # Plain aligned columns, not a rich table: ids are pasted into `status`, so they are never
    # cut to the terminal's (or a pipe's 80-column) width.
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)),
            row[3],
        )
    return 0


async def cmd_download(settings: Settings, args: argparse.Namespace) -> int:
    try:
        verify_key = verify_key_pem(settings, args.verify_key)
    except (BackupError, OSError) as err:
        console.print(f"download refused: can not read the verify key: {err}", markup=False)
        return 2
    if verify_key is None and args.require_signature:
        console.print(
            "download refused: --require-signature, but there is no verify key "
            "(pass --verify-key FILE or set MANIFEST_VERIFY_KEY_FILE)",
            markup=False,
        )
        return 2
    try:
        manifest = await download(args.location, args.output, settings, None, args.verify_key)
        if args.identity and manifest.encryption:
            encrypted = args.output.with_name(args.output.name + ".age")
            args.output.replace(encrypted)
            decrypt_file(encrypted, args.output, args.identity)
            encrypted.unlink()
    except (BackupError, OSError) as err:
        console.print(f"[red]download refused:[/red] {err}")
        return 1
    signature = (
        f"signature verified with {verify_key[1]}"
        if verify_key
        else "signature NOT checked: no verify key (pass --verify-key or set "
        "MANIFEST_VERIFY_KEY_FILE)"
    )
    console.print(
        f"{args.output}: {manifest.size_bytes:,} bytes, sha256 {manifest.sha256} verified; "
        f"{signature}; {manifest.format} / {manifest.compression} of schema "
        f"{manifest.schema_name} ({manifest.table_count} tables)",
        markup=False,
        soft_wrap=True,
    )
    return 0


async def cmd_restore(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    try:
        request = RestoreRequest(
            location=args.location,
            into_schema=args.into,
            database=args.database,
            replace=args.replace,
            confirm_replace=args.confirm_replace,
        )
    except ValidationError as err:
        console.print(f"[red]invalid request:[/red] {problems(err)}")
        return 2
    target = f"schema {args.into}" if args.into else "the project's schema (replace)"
    handle = await client.start_workflow(
        RestoreBackupWorkflow.run,
        request.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
        id=f"restore-backup-{args.into or 'replace'}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue,
        static_summary=f"Restore {args.location} as {target}",
    )
    console.print(f"started {handle.id}")
    try:
        result = await handle.result()
    except WorkflowFailureError as err:
        console.print(f"[red]restore failed:[/red] {root_cause(err)}")
        return 1
    print(result.model_dump_json(indent=2))
    return 0 if result.verified else 1


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """Apply (or with --dry-run, plan) the project's retention policy now (README "Retention")."""
    try:
        policy = settings.retention_policy_for(args.project)
    except ConfigurationError as err:
        console.print(f"[red]configuration error:[/red] {err}")
        return 2
    outcome = await apply_retention(open_storage(settings), args.project, policy, args.dry_run)
    print(outcome.model_dump_json(indent=2))
    return 1 if outcome.errors else 0


def root_cause(err: BaseException) -> str:
    """The innermost message: 'Activity task failed' says nothing to a person."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


def cmd_keys(args: argparse.Namespace) -> int:
    """Keys for a new deployment (see backup.keys)."""
    try:
        keys = generate_keys(args.out)
    except ConfigurationError as err:
        console.print(f"[red]{err}[/red]")
        return 1
    print(
        f"workers:  ENCRYPTION_RECIPIENTS={keys.recipient}\n"
        f"          MANIFEST_SIGNING_KEY_FILE={keys.signing_key_file}\n"
        f"restore:  MANIFEST_VERIFY_KEY_FILE={keys.verify_key_file}\n"
        f"          starter.py download LOCATION -o FILE --identity {keys.identity_file}\n"
        f"Keep {keys.identity_file.name} off the workers: it reads every backup encrypted to "
        f"{keys.recipient}."
    )
    return 0


async def cmd_schedule(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    """schedule create | update | list | describe | pause | unpause | trigger | delete (README
    "Schedules"). A bad flag or an unknown schedule id exits 2 with a message, no traceback
    (update: an unknown id exits 1)."""
    try:
        return await SCHEDULE_COMMANDS[args.schedule_command](client, settings, args)
    except schedules.ScheduleOptionError as err:
        console.print(f"[red]invalid {err.option}:[/red] {err.message}")
        return 2
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        console.print(
            f"[red]no schedule {args.schedule_id!r}[/red] (see: starter.py schedule list)"
        )
        return 2


async def schedule_create(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    timing = schedules.Timing(
        cron=args.cron,
        timezone=args.timezone,
        catchup_window=schedules.parse_duration(args.catchup_window),
        paused=args.paused,
        note=args.note,
    )
    queue = settings.temporal_task_queue
    if args.all:
        try:
            fleet = FleetRequest(
                max_concurrent=args.max_concurrent,
                format=args.format,
                verify_restore=args.verify_restore,
            )
        except ValidationError as err:  # only max_concurrent can be out of range here
            raise schedules.ScheduleOptionError("--max-concurrent", problems(err)) from None
        schedule_id = schedules.FLEET_SCHEDULE_ID
        schedule = schedules.fleet_schedule(fleet, queue, timing)
    else:
        body = schedules.export_request_body(args.project, args.format, args.verify_restore)
        schedule_id = schedules.project_schedule_id(args.project)
        schedule = schedules.export_schedule(body, queue, timing)
    try:
        await schedules.create_schedule(client, schedule_id, schedule)
    except schedules.ScheduleExistsError:
        console.print(
            f"[red]schedule {schedule_id} already exists[/red]: "
            f"starter.py schedule delete {schedule_id}, then create it again"
        )
        return 1
    console.print(
        f"created schedule {schedule_id}; next runs: {await next_runs(client, schedule_id)}"
    )
    return 0


async def next_runs(client: Client, schedule_id: str) -> str:
    info = await schedules.describe(client, schedule_id)
    upcoming = ", ".join(f"{t[:16].replace('T', ' ')} UTC" for t in info["next"][:3])
    return upcoming or "none (paused)"


async def schedule_update(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    """Change only the settings given; paused state, note and history stay."""
    if args.all:
        schedule_id = schedules.FLEET_SCHEDULE_ID
    elif args.project is not None:
        schedule_id = schedules.project_schedule_id(args.project)
    else:
        schedule_id = args.schedule_id
    changes = schedules.Changes(
        cron=args.cron,
        timezone=args.timezone,
        catchup_window=(
            None if args.catchup_window is None else schedules.parse_duration(args.catchup_window)
        ),
        paused=args.paused,
        note=args.note,
        format=None if args.format is None else DumpFormat(args.format),
        verify_restore=args.verify_restore,
        max_concurrent=args.max_concurrent,
    )
    if changes == schedules.Changes():
        console.print("[red]nothing to update:[/red] give the flags to change (see --help)")
        return 2
    try:
        await schedules.update_schedule(client, schedule_id, changes)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        console.print(f"[red]no schedule {schedule_id!r}[/red] (see: starter.py schedule list)")
        return 1
    console.print(
        f"updated schedule {schedule_id}; next runs: {await next_runs(client, schedule_id)}"
    )
    return 0


async def schedule_list(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    table = Table("schedule id", "workflow", "cron", "time zone", "paused", "next run (UTC)")
    for entry in await schedules.list_backup_schedules(client):
        listed = entry.schedule  # missing only on servers without advanced visibility
        upcoming = entry.info.next_action_times if entry.info else []
        table.add_row(
            entry.id,
            getattr(listed.action, "workflow", "?") if listed else "?",
            (schedules.cron_text(listed.spec) if listed else None)
            or str(await entry.memo_value("cron", "")),
            (listed.spec.time_zone_name if listed else None) or "UTC",
            "yes" if listed and listed.state.paused else "no",
            f"{upcoming[0]:%Y-%m-%d %H:%M}" if upcoming else "",
        )
    Console().print(table)
    return 0


async def schedule_describe(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(await schedules.describe(client, args.schedule_id), indent=2))
    return 0


async def schedule_action(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    """pause, unpause, trigger, delete: one call on the schedule handle."""
    handle = client.get_schedule_handle(args.schedule_id)
    command = args.schedule_command
    if command == "pause":
        await handle.pause(note=args.note)
    elif command == "unpause":
        await handle.unpause(note=args.note)
    elif command == "trigger":
        await handle.trigger()  # the schedule's overlap policy (SKIP) still applies
    else:
        await handle.delete()  # backups it started keep running
    console.print(f"{command}: {args.schedule_id}")
    return 0


SCHEDULE_COMMANDS = {
    "create": schedule_create,
    "update": schedule_update,
    "list": schedule_list,
    "describe": schedule_describe,
    "pause": schedule_action,
    "unpause": schedule_action,
    "trigger": schedule_action,
    "delete": schedule_action,
}


def add_schedule_parser(sub: Any) -> None:
    sched = sub.add_parser("schedule", help="recurring backups (Temporal Schedules)")
    commands = sched.add_subparsers(dest="schedule_command", required=True)
    create = commands.add_parser("create", help="back up a project, or all, on a cron schedule")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", help="schedule id export-backup-<project>")
    target.add_argument(
        "--all", action="store_true", help="every ACTIVE project; schedule id export-backup-fleet"
    )
    create.add_argument("--cron", required=True, help='5 fields, e.g. "0 2 * * *", or @daily')
    create.add_argument("--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin")
    create.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    create.add_argument("--verify-restore", action="store_true", help="test-restore each backup")
    create.add_argument(
        "--catchup-window",
        default="1h",
        help="run a backup missed while Temporal was down if it is back within this (1h)",
    )
    create.add_argument("--max-concurrent", type=int, default=4, help="with --all: backups at once")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument("--note", help="shown with the schedule")
    add_schedule_update_parser(commands)
    commands.add_parser("list", help="this deployment's backup schedules")
    for name, text in [
        ("describe", "spec, policy, input, recent and next runs (JSON)"),
        ("pause", "stop starting backups until unpaused"),
        ("unpause", "start backups on schedule again"),
        ("trigger", "start one backup now (skipped if one from this schedule still runs)"),
        ("delete", "remove the schedule (running backups continue)"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("schedule_id")
        if name in ("pause", "unpause"):
            command.add_argument("--note")


def add_schedule_update_parser(commands: Any) -> None:
    """`schedule update`: create's flags, each optional; only those given change."""
    update = commands.add_parser("update", help="change a schedule, keeping its state and history")
    target = update.add_mutually_exclusive_group(required=True)
    target.add_argument("schedule_id", nargs="?", help="e.g. export-backup-acme")
    target.add_argument("--project", help="the schedule export-backup-<project>")
    target.add_argument("--all", action="store_true", help="the fleet schedule")
    update.add_argument("--cron", help='5 fields, e.g. "0 2 * * *", or @daily')
    update.add_argument("--timezone", help="IANA name, e.g. Europe/Berlin")
    update.add_argument("--format", choices=[f.value for f in DumpFormat])
    update.add_argument(
        "--verify-restore",
        action=argparse.BooleanOptionalAction,
        help="test-restore each backup (--no-verify-restore: stop)",
    )
    update.add_argument("--catchup-window", help="e.g. 30m, 1h")
    update.add_argument("--max-concurrent", type=int, help="fleet schedule: backups at once")
    update.add_argument("--paused", action="store_true", help="also pause it")
    update.add_argument("--note", help="shown with the schedule")


def _valid_project_id(value: str) -> bool:
    return re.fullmatch(PROJECT_ID_PATTERN, value) is not None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Start and watch export backups.")
    sub = p.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="back up one project")
    export.add_argument("--project", required=True)
    export.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    export.add_argument(
        "--compression",
        choices=[c.value for c in Compression],
        default=Compression.ZSTD.value,
        help="none stores pg_dump's output as is (like --no-compress)",
    )
    export.add_argument("--no-compress", action="store_true")
    export.add_argument("--notify-email")
    export.add_argument("--request-id", help="idempotency key: the same id never runs twice")
    export.add_argument(
        "--verify-restore",
        action="store_true",
        help="test-restore into a scratch database before uploading",
    )
    export.add_argument("--follow", action="store_true", help="show progress until the result")
    export.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="state or result of one backup")
    status.add_argument("workflow_id")
    status.add_argument("--json", action="store_true")
    listing = sub.add_parser("list", help="recent backups")
    listing.add_argument("--project")
    listing.add_argument("--limit", type=int, default=20)
    fetch = sub.add_parser(
        "download", help="fetch a backup by location, verify its signature and SHA-256"
    )
    fetch.add_argument("location", help="file://, s3:// or telegram:// location from a result")
    fetch.add_argument("-o", "--output", type=Path, required=True)
    fetch.add_argument(
        "--verify-key",
        type=Path,
        help="Ed25519 public key (PEM) the manifest must be signed with; overrides "
        "MANIFEST_VERIFY_KEY_FILE",
    )
    fetch.add_argument(
        "--require-signature",
        action="store_true",
        help="refuse (exit 2) when no verify key is given or configured",
    )
    fetch.add_argument("--identity", type=Path, help="age identity file: decrypt after verifying")
    back = sub.add_parser(
        "restore", help="restore a backup under a new schema beside the original, or replace"
    )
    back.add_argument("location", help="location from an export result")
    target = back.add_mutually_exclusive_group(required=True)
    target.add_argument("--into", help="the new schema name")
    target.add_argument(
        "--replace",
        action="store_true",
        help="replace the project's schema (after a safety backup); needs --confirm-replace",
    )
    back.add_argument("--confirm-replace", action="store_true", help="yes, replace it")
    back.add_argument("--database", help="another database on the same server (with --into)")
    retention = sub.add_parser("retention", help="prune a project's old backups by its policy")
    retention.add_argument("action", choices=["apply"])
    retention.add_argument("--project", required=True)
    retention.add_argument("--dry-run", action="store_true", help="list what would be pruned")
    keys = sub.add_parser("keys", help="generate encryption and signing keys for a deployment")
    keys.add_argument("--out", type=Path, required=True, help="directory for the key files")
    add_schedule_parser(sub)
    return p


COMMANDS = {
    "export": cmd_export,
    "status": cmd_status,
    "list": cmd_list,
    "restore": cmd_restore,
    "schedule": cmd_schedule,
}


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_environment()
    except ConfigurationError as err:
        console.print(f"[red]configuration error:[/red] {err}", markup=True, highlight=False)
        return 2
    if args.command == "download":  # needs storage credentials, not Temporal
        return await cmd_download(settings, args)
    if args.command == "keys":
        return cmd_keys(args)
    if args.command == "retention":  # needs storage credentials, not Temporal
        return await cmd_retention(settings, args)
    client = await connect_with(settings)
    return await COMMANDS[args.command](client, settings, args)


if __name__ == "__main__":
    exit_without_finalizing(asyncio.run(main()))
