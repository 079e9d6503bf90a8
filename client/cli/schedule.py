"""schedule create | update | list | describe | pause | unpause | trigger | delete
(docs/operations.md "Schedules"). A bad flag exits 2 naming it; an unknown id exits 1."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from backup.fleet_models import FleetRequest
from backup.models import DumpFormat
from backup.settings import Settings
from client import schedules
from client.cli.output import fail, say, show_json, show_listing
from client.connection import connect_with
from client.errors import not_found_as
from client.render import Column
from workflows.inputs import problems

HINT = "starter.py schedule list"


async def run(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect_with(settings)
    try:
        return await COMMANDS[args.schedule_command](client, settings, args)
    except schedules.ScheduleOptionError as err:
        fail(f"invalid {err.option}", err.message)
        return 2


async def create(client: Client, settings: Settings, args: argparse.Namespace) -> int:
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
        fail(
            f"schedule {schedule_id} already exists",
            f"starter.py schedule delete {schedule_id}, then create it again",
        )
        return 1
    say(f"created schedule {schedule_id}; next runs: {await next_runs(client, schedule_id)}")
    return 0


async def next_runs(client: Client, schedule_id: str) -> str:
    info = await schedules.describe(client, schedule_id)
    upcoming = ", ".join(f"{t[:16].replace('T', ' ')} UTC" for t in info["next"][:3])
    return upcoming or "none (paused)"


async def update(client: Client, settings: Settings, args: argparse.Namespace) -> int:
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
        fail("nothing to update", "give the flags to change (see --help)")
        return 2
    with not_found_as(f"schedule {schedule_id!r}", HINT):
        await schedules.update_schedule(client, schedule_id, changes)
    say(f"updated schedule {schedule_id}; next runs: {await next_runs(client, schedule_id)}")
    return 0


COLUMNS = (
    Column("SCHEDULE ID"),
    Column("WORKFLOW"),
    Column("CRON", drop=3),
    Column("TIME ZONE", drop=2),
    Column("PAUSED", drop=4),
    Column("NEXT RUN (UTC)", drop=1),
)


async def list_schedules(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for entry in await schedules.list_backup_schedules(client):
        listed = entry.schedule  # missing only on servers without advanced visibility
        upcoming = entry.info.next_action_times if entry.info else []
        rows.append(
            {
                "id": entry.id,
                "workflow": getattr(listed.action, "workflow", "?") if listed else "?",
                "cron": (schedules.cron_text(listed.spec) if listed else None)
                or str(await entry.memo_value("cron", "")),
                "timezone": (listed.spec.time_zone_name if listed else None) or "UTC",
                "paused": bool(listed and listed.state.paused),
                "next": upcoming[0].isoformat() if upcoming else None,
            }
        )
    if args.json:
        show_json(rows)
        return 0
    cells = [
        [
            r["id"],
            r["workflow"],
            r["cron"],
            r["timezone"],
            "yes" if r["paused"] else "no",
            (r["next"] or "")[:16].replace("T", " "),
        ]
        for r in rows
    ]
    show_listing(COLUMNS, cells)
    return 0


async def describe(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    with not_found_as(f"schedule {args.schedule_id!r}", HINT):
        show_json(await schedules.describe(client, args.schedule_id))
    return 0


async def action(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    """pause, unpause, trigger, delete: one call on the schedule handle."""
    handle = client.get_schedule_handle(args.schedule_id)
    command = args.schedule_command
    with not_found_as(f"schedule {args.schedule_id!r}", HINT):
        if command == "pause":
            await handle.pause(note=args.note)
        elif command == "unpause":
            await handle.unpause(note=args.note)
        elif command == "trigger":
            await handle.trigger()  # the schedule's overlap policy (SKIP) still applies
        else:
            await handle.delete()  # backups it started keep running
    say(f"{command}: {args.schedule_id}")
    return 0


COMMANDS = {
    "create": create,
    "update": update,
    "list": list_schedules,
    "describe": describe,
    "pause": action,
    "unpause": action,
    "trigger": action,
    "delete": action,
}


def add(sub: Any) -> None:
    sched = sub.add_parser("schedule", help="recurring backups (Temporal Schedules)")
    sched.set_defaults(run=run)
    commands = sched.add_subparsers(dest="schedule_command", required=True)
    create_parser = commands.add_parser(
        "create", help="back up a project, or all, on a cron schedule"
    )
    target = create_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", help="schedule id export-backup-<project>")
    target.add_argument(
        "--all", action="store_true", help="every ACTIVE project; schedule id export-backup-fleet"
    )
    create_parser.add_argument(
        "--cron", required=True, help='5 fields, e.g. "0 2 * * *", or @daily'
    )
    create_parser.add_argument("--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin")
    add_backup_flags(create_parser, creating=True)
    update_parser = commands.add_parser(
        "update", help="change a schedule, keeping its state and history"
    )
    target = update_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("schedule_id", nargs="?", help="e.g. export-backup-acme")
    target.add_argument("--project", help="the schedule export-backup-<project>")
    target.add_argument("--all", action="store_true", help="the fleet schedule")
    update_parser.add_argument("--cron", help='5 fields, e.g. "0 2 * * *", or @daily')
    update_parser.add_argument("--timezone", help="IANA name, e.g. Europe/Berlin")
    add_backup_flags(update_parser, creating=False)
    listing = commands.add_parser("list", help="this deployment's backup schedules")
    listing.add_argument("--json", action="store_true")
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


def add_backup_flags(p: argparse.ArgumentParser, creating: bool) -> None:
    """The flags create and update share: at create with defaults, at update each optional
    (only those given change)."""
    p.add_argument(
        "--format", choices=[f.value for f in DumpFormat], default="custom" if creating else None
    )
    if creating:
        p.add_argument("--verify-restore", action="store_true", help="test-restore each backup")
    else:
        p.add_argument(
            "--verify-restore",
            action=argparse.BooleanOptionalAction,
            help="test-restore each backup (--no-verify-restore: stop)",
        )
    p.add_argument(
        "--catchup-window",
        default="1h" if creating else None,
        help="run a backup missed while Temporal was down if it is back within this (1h)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=4 if creating else None,
        help="fleet schedule (--all): backups at once",
    )
    p.add_argument("--paused", action="store_true", help="also pause it")
    p.add_argument("--note", help="shown with the schedule")
