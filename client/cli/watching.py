"""follow and status: watch any of the three workflows to its end, or ask where it is; each
kind of workflow with its view while it runs, its result table, and what counts as success."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from backup.fleet_models import FleetSummary
from backup.models import ExportResult, RestoreResult
from backup.settings import Settings
from client.cli.output import fail, say, show, show_json
from client.connection import connect_with
from client.errors import not_found_as, root_cause
from client.progress import FLEET, TRANSFER, View, follow
from client.render import fleet_table, restore_table, result_table, workflow_link
from client.reports import failure_report
from workflows.export_backup import ExportBackupWorkflow

LIST = "starter.py list"


@dataclass(frozen=True)
class Kind:
    failed: str  # how its failure starts: "backup failed: ..."
    view: View
    result: type[BaseModel]
    table: Callable[[Any, str, Settings], Table]  # result, Web UI link
    succeeded: Callable[[Any], bool]


KINDS = {
    "ExportBackupWorkflow": Kind(
        "backup failed",
        TRANSFER,
        ExportResult,
        lambda r, _, s: result_table(r, s.temporal_ui_url, s.temporal_namespace),
        lambda r: True,
    ),
    "RestoreBackupWorkflow": Kind(
        "restore failed",
        TRANSFER,
        RestoreResult,
        lambda r, link, _: restore_table(r, link),
        lambda r: bool(r.verified),
    ),
    "BackupAllProjectsWorkflow": Kind(
        "fleet backup failed",
        FLEET,
        FleetSummary,
        lambda r, link, _: fleet_table(r, link),
        lambda r: not r.failed,
    ),
}


def watch_options(parser: argparse.ArgumentParser, follow: str, as_json: str | None = None) -> None:
    """--follow and --json of a command that starts a workflow (see `after_start`)."""
    parser.add_argument("--follow", action="store_true", help=follow)
    parser.add_argument("--json", action="store_true", help=as_json)


async def after_start(
    handle: WorkflowHandle[Any, Any],
    client: Client,
    settings: Settings,
    args: argparse.Namespace,
    *,
    wait: bool = False,
) -> int:
    """Say where the started workflow is, then watch it to its end with --follow (or always
    when `wait`, live only with --follow); else, with --json, print its ids for scripts."""
    say(f"started {handle.id}")
    say(f"Web UI: {workflow_link(settings.temporal_ui_url, client.namespace, handle.id)}")
    if args.follow or wait:
        return await watch(handle, client, settings, args.json, live=args.follow)
    if args.json:
        show_json({"workflow_id": handle.id, "run_id": handle.result_run_id})
    return 0


async def kind_of(handle: WorkflowHandle[Any, Any], client: Client) -> tuple[Kind | None, Any]:
    """The workflow's kind (None, said on stderr, for a workflow none of ours) and its
    description; NotFound for an unknown id."""
    with not_found_as(f"workflow {handle.id!r} in namespace {client.namespace}", LIST):
        description = await handle.describe()
    kind = KINDS.get(description.workflow_type)
    if kind is None:
        fail(f"{handle.id} is a {description.workflow_type}", "not a backup, restore or fleet")
    return kind, description


async def watch(
    handle: WorkflowHandle[Any, Any],
    client: Client,
    settings: Settings,
    as_json: bool,
    live: bool = True,
    failure_json: bool = False,
) -> int:
    """Wait for the workflow's end (showing progress when `live`); print its result as its
    kind's table, or JSON (a failure as JSON also with `failure_json`)."""
    kind, _ = await kind_of(handle, client)
    if kind is None:
        return 2
    try:
        result = await (follow(handle, kind.view) if live else handle.result())
    except WorkflowFailureError as err:
        fail(kind.failed, root_cause(err))
        if as_json or failure_json:
            show_json(await failure_report(handle, err))
        return 1
    value = kind.result.model_validate(result)
    if as_json:
        show_json(value)
    else:
        link = workflow_link(settings.temporal_ui_url, client.namespace, handle.id)
        show(kind.table(value, link, settings))
    return 0 if kind.succeeded(value) else 1


async def follow_command(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect_with(settings)
    return await watch(client.get_workflow_handle(args.workflow_id), client, settings, args.json)


async def status(args: argparse.Namespace, settings: Settings) -> int:
    """A running backup, restore or fleet as JSON (step, bytes, details); a finished one as
    its result table (JSON with --json); a failed one as the failure report (always JSON)."""
    client = await connect_with(settings)
    handle = client.get_workflow_handle(args.workflow_id)
    kind, description = await kind_of(handle, client)
    if kind is None:
        return 2
    if description.status != WorkflowExecutionStatus.RUNNING:
        return await watch(handle, client, settings, args.json, live=False, failure_json=True)
    state = await kind.view.poll(handle)
    info: dict[str, Any] = {"status": "RUNNING", "workflow_type": description.workflow_type}
    if description.workflow_type == "ExportBackupWorkflow":
        progress = await handle.query(ExportBackupWorkflow.progress)
        info["progress"] = progress.model_dump(mode="json") if progress else None
    show_json(
        {**info, "state": state.text, "live_bytes": state.done, "live_total_bytes": state.total}
    )
    return 0


def add(sub: Any) -> None:
    p = sub.add_parser("follow", help="watch a running backup, restore or fleet backup")
    p.set_defaults(run=follow_command)
    p.add_argument("workflow_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("status", help="state or result of a backup, restore or fleet backup")
    p.set_defaults(run=status)
    p.add_argument("workflow_id")
    p.add_argument("--json", action="store_true")
