"""Temporal Schedules for backups (client side; docs/operations.md "Schedules").

One schedule per project, `export-backup-<project_id>`, starting ExportBackupWorkflow, and one
for the fleet, `export-backup-fleet`, starting BackupAllProjectsWorkflow. Temporal appends the
scheduled time to the action's workflow id (`export-backup-acme-2026-11-27T01:00:00Z`), so
every scheduled backup has its own id in the `export-backup-{project_id}-{...}` family.

`update_schedule` changes some settings of an existing schedule and keeps the rest, its paused
state and history included.
"""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleAction,
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleListDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from backup.fleet_models import FleetRequest
from backup.models import PROJECT_ID_PATTERN, DumpFormat, ExportRequest
from workflows.inputs import problems
from workflows.search_attributes import PROJECT_ID

SCHEDULE_PREFIX = "export-backup-"
FLEET_SCHEDULE_ID = "export-backup-fleet"
# A backup missed while the server was down still runs if the server is back within this
# window; later, it is skipped (the next one follows on schedule) rather than a pile of stale
# backups starting at once in business hours. Temporal's own default is one year.
DEFAULT_CATCHUP_WINDOW = timedelta(hours=1)
# Temporal does not honour shorter windows.
MIN_CATCHUP_WINDOW = timedelta(seconds=10)
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleOptionError(ValueError):
    """A bad command-line value; `option` names the flag to fix."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option, self.message = option, message


class ScheduleExistsError(Exception):
    """A schedule with this id exists already: delete it first."""


@dataclass(frozen=True)
class Timing:
    """When a schedule fires and what it does about missed and overlapping runs."""

    cron: str
    timezone: str = "UTC"
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    paused: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Changes:
    """What `schedule update` changes; None keeps the current value. `paused` only pauses
    (unpause is its own command), `verify_restore=False` turns test restores off."""

    cron: str | None = None
    timezone: str | None = None
    catchup_window: timedelta | None = None
    paused: bool = False
    note: str | None = None
    format: DumpFormat | None = None
    verify_restore: bool | None = None
    max_concurrent: int | None = None


def project_schedule_id(project_id: str) -> str:
    if re.fullmatch(PROJECT_ID_PATTERN, project_id) is None:
        raise ScheduleOptionError(
            "--project", f"{project_id!r} is not a project id ({PROJECT_ID_PATTERN})"
        )
    if f"{SCHEDULE_PREFIX}{project_id}" == FLEET_SCHEDULE_ID:
        raise ScheduleOptionError(
            "--project", f"{project_id!r} collides with the fleet schedule {FLEET_SCHEDULE_ID}"
        )
    return f"{SCHEDULE_PREFIX}{project_id}"


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `1h30m`, `2d` → timedelta (for --catchup-window)."""
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or parts is None:
        raise ScheduleOptionError(
            "--catchup-window", f"{text!r} is not a duration like 90s, 30m, 1h or 1d"
        )
    days, hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    window = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if window < MIN_CATCHUP_WINDOW:
        raise ScheduleOptionError("--catchup-window", "must be at least 10s")
    return window


def check_timing(timing: Timing) -> None:
    """Catch the common mistakes here, naming the flag; the server checks field ranges."""
    check_cron(timing.cron)
    check_timezone(timing.timezone)


def check_cron(cron: str) -> None:
    fields = cron.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0] in CRON_MACROS)):
        raise ScheduleOptionError(
            "--cron",
            f"{cron!r} is not a 5-field cron expression (minute hour day-of-month month "
            f"day-of-week, e.g. '0 2 * * *') or one of {', '.join(sorted(CRON_MACROS))}",
        )
    if "#" in cron:  # the server would read the rest as a comment and silently ignore it
        raise ScheduleOptionError("--cron", f"{cron!r}: '#' is not supported")


def check_timezone(timezone: str) -> None:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleOptionError(
            "--timezone", f"unknown time zone {timezone!r} (an IANA name: Europe/Berlin)"
        ) from None


def _cron_expression(cron: str) -> str:
    # The server keeps a cron only as calendar ranges, but keeps a comment with them: the
    # comment records the text as given (a schedule's memo can not be updated later).
    return f"{cron} # {cron}"


def cron_text(spec: ScheduleSpec) -> str | None:
    """The cron as given at create or update; None for schedules created before the text was
    kept in the spec (their memo has it)."""
    return next((c.comment for c in spec.calendars if c.comment), None)


def export_request_body(
    project_id: str, format: DumpFormat = DumpFormat.CUSTOM, verify_restore: bool = False
) -> dict[str, Any]:
    """The ExportRequest JSON a scheduled backup starts with, validated now rather than at
    02:00. verify_restore is sent only when asked for."""
    body: dict[str, Any] = {"project_id": project_id, "format": DumpFormat(format).value}
    if verify_restore:
        body["verify_restore"] = True
    return _validated_export_body(body)


def _validated_export_body(body: dict[str, Any]) -> dict[str, Any]:
    try:
        ExportRequest.model_validate(body)
    except ValidationError as err:
        problem = err.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else "project_id"
        option = "--project" if field == "project_id" else f"--{field.replace('_', '-')}"
        raise ScheduleOptionError(option, problem["msg"]) from None
    return body


def _spec_and_policy(timing: Timing) -> dict[str, Any]:
    check_timing(timing)
    return {
        "spec": ScheduleSpec(
            cron_expressions=[_cron_expression(timing.cron)], time_zone_name=timing.timezone
        ),
        # A backup still running when the next one is due: skip the new one, never pile up.
        "policy": SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timing.catchup_window
        ),
        "state": ScheduleState(paused=timing.paused, note=timing.note),
    }


def export_schedule(body: dict[str, Any], task_queue: str, timing: Timing) -> Schedule:
    """Back up one project (`body` from export_request_body) on `timing`."""
    project_id = body["project_id"]
    action = ScheduleActionStartWorkflow(
        "ExportBackupWorkflow",
        body,
        id=f"{SCHEDULE_PREFIX}{project_id}",
        task_queue=task_queue,
        typed_search_attributes=TypedSearchAttributes(
            [SearchAttributePair(PROJECT_ID, project_id)]
        ),
        static_summary=_export_summary(body),
    )
    return Schedule(action=action, **_spec_and_policy(timing))


def fleet_schedule(request: FleetRequest, task_queue: str, timing: Timing) -> Schedule:
    """Back up every ACTIVE project on `timing`."""
    action = ScheduleActionStartWorkflow(
        "BackupAllProjectsWorkflow",
        request.model_dump(mode="json", exclude_defaults=True),
        id=FLEET_SCHEDULE_ID,
        task_queue=task_queue,
        static_summary=_fleet_summary(request),
    )
    return Schedule(action=action, **_spec_and_policy(timing))


def _export_summary(body: dict[str, Any]) -> str:
    return f"Scheduled export backup of project {body['project_id']} ({body['format']})"


def _fleet_summary(request: FleetRequest) -> str:
    return f"Scheduled backup of all active projects ({request.format})"


async def create_schedule(client: Client, schedule_id: str, schedule: Schedule) -> ScheduleHandle:
    """Create the schedule (ScheduleExistsError if the id is taken: delete it first).
    Server-side spec errors are raised as ScheduleOptionError naming the flag."""
    try:
        return await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        raise ScheduleExistsError(schedule_id) from None
    except RPCError as err:
        raise _option_error(err) from None


async def update_schedule(client: Client, schedule_id: str, changes: Changes) -> None:
    """Apply `changes` to the schedule, keeping everything else (paused state, note, history,
    the action's other fields). Bad values raise ScheduleOptionError naming the flag, before
    anything is changed; an unknown id raises RPCError NOT_FOUND."""
    if changes.cron is not None:
        check_cron(changes.cron)
    if changes.timezone is not None:
        check_timezone(changes.timezone)

    # The SDK may call this more than once, each time with a fresh description.
    async def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = current.description.schedule
        spec, policy, state = schedule.spec, schedule.policy, schedule.state
        if changes.cron is not None:  # the old cron is the calendars; other spec fields stay
            spec = dataclasses.replace(
                spec, calendars=[], cron_expressions=[_cron_expression(changes.cron)]
            )
        if changes.timezone is not None:
            spec = dataclasses.replace(spec, time_zone_name=changes.timezone)
        if changes.catchup_window is not None:
            policy = dataclasses.replace(policy, catchup_window=changes.catchup_window)
        if changes.paused:
            state = dataclasses.replace(state, paused=True)
        if changes.note is not None:
            state = dataclasses.replace(state, note=changes.note)
        schedule.spec, schedule.policy, schedule.state = spec, policy, state
        await _update_input(client, schedule.action, changes)
        return ScheduleUpdate(schedule=schedule)

    try:
        await client.get_schedule_handle(schedule_id).update(updater)
    except RPCError as err:
        raise _option_error(err) from None


async def _update_input(client: Client, action: ScheduleAction, changes: Changes) -> None:
    """Change the backup input the schedule starts with (format, verify_restore,
    max_concurrent), keeping its other fields."""
    given = {
        "format": changes.format.value if changes.format else None,
        "verify_restore": changes.verify_restore,
        "max_concurrent": changes.max_concurrent,
    }
    update = {field: value for field, value in given.items() if value is not None}
    if not update:
        return  # the stored (maybe encrypted) payloads go back untouched
    assert isinstance(action, ScheduleActionStartWorkflow)
    [current] = await client.data_converter.decode(list(action.args)) or [{}]
    if action.workflow == "BackupAllProjectsWorkflow":
        try:
            request = FleetRequest.model_validate({**current, **update})
        except ValidationError as err:  # format is checked by argparse: max_concurrent
            raise ScheduleOptionError("--max-concurrent", problems(err)) from None
        action.args = [request.model_dump(mode="json", exclude_defaults=True)]
        action.static_summary = _fleet_summary(request)
        return
    if "max_concurrent" in update:
        raise ScheduleOptionError("--max-concurrent", "only for the fleet schedule (--all)")
    body = {**current, **update}
    if not body.get("verify_restore"):  # sent only when asked for, as at create
        body.pop("verify_restore", None)
    body = _validated_export_body(body)
    action.args = [body]
    action.static_summary = _export_summary(body)


def _option_error(err: RPCError) -> Exception:
    """The server's rejection of a spec as ScheduleOptionError naming the flag; any other
    error as it is."""
    if err.status != RPCStatusCode.INVALID_ARGUMENT:
        return err
    option = "--timezone" if "time zone" in err.message else "--cron"
    return ScheduleOptionError(option, err.message)


async def list_backup_schedules(client: Client) -> list[ScheduleListDescription]:
    """This project's schedules (by id prefix), sorted by id. Listing is eventually
    consistent: a schedule created a moment ago may be missing."""
    found = [s async for s in await client.list_schedules() if s.id.startswith(SCHEDULE_PREFIX)]
    return sorted(found, key=lambda s: s.id)


async def describe(client: Client, schedule_id: str) -> dict[str, Any]:
    """A JSON-ready description: spec, policy, state, input, recent and next runs."""
    d = await client.get_schedule_handle(schedule_id).describe()
    action = d.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    args = list(action.args)
    if args and isinstance(args[0], Payload):  # as stored: encoded (maybe encrypted) payloads
        args = await client.data_converter.decode(args)
    spec, policy, state, info = d.schedule.spec, d.schedule.policy, d.schedule.state, d.info
    return {
        "id": d.id,
        "workflow": action.workflow,
        "workflow_id": action.id,
        "task_queue": action.task_queue,
        "input": args[0] if args else None,
        "cron": cron_text(spec) or await d.memo_value("cron", None),
        "timezone": spec.time_zone_name or "UTC",
        "overlap": policy.overlap.name,
        "catchup_window_seconds": (
            policy.catchup_window.total_seconds() if policy.catchup_window else None
        ),
        "paused": state.paused,
        "note": state.note,
        "actions": info.num_actions,
        "skipped_overlap": info.num_actions_skipped_overlap,
        "missed_catchup_window": info.num_actions_missed_catchup_window,
        "running": [_workflow_id(r) for r in info.running_actions],
        "recent": [
            {
                "scheduled_at": a.scheduled_at.isoformat(),
                "started_at": a.started_at.isoformat(),
                "workflow_id": _workflow_id(a.action),
            }
            for a in info.recent_actions
        ],
        "next": [t.isoformat() for t in info.next_action_times[:5]],
    }


def _workflow_id(execution: ScheduleActionExecution) -> str | None:
    return (
        execution.workflow_id
        if isinstance(execution, ScheduleActionExecutionStartWorkflow)
        else None
    )
