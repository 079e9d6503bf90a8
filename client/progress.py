"""Following a running workflow for a person: its step, the bytes its running activity last
heartbeated and the rate, or for a fleet backup how many are done, running and failed, until
the result arrives."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionDescription, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from backup.fleet_models import FleetSummary
from client.render import fleet_line
from workflows.fleet import BackupAllProjectsWorkflow
from workflows.search_attributes import BACKUP_STEP

R = TypeVar("R")


@dataclass(frozen=True)
class Snapshot:
    text: str
    done: int = 0
    total: int | None = None


async def live_bytes(description: WorkflowExecutionDescription) -> tuple[int, int | None]:
    """Bytes done (and total, when known) from the running activity's last heartbeat."""
    for pending in description.raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            values = await description.data_converter.decode(pending.heartbeat_details.payloads)
            if values and isinstance(values[0], dict):
                return int(values[0].get("bytes") or 0), values[0].get("total_bytes")
    return 0, None


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What the workflow shows in the Web UI's "current details", as plain text."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return re.sub(r"\*\*(.*?)\*\*", r"\1", metadata.current_details)


async def transfer_state(handle: WorkflowHandle[Any, Any]) -> Snapshot:
    """Export and restore: the BackupStep search attribute and the heartbeated bytes."""
    description = await handle.describe()
    done, total = await live_bytes(description)
    return Snapshot(description.typed_search_attributes.get(BACKUP_STEP) or "starting", done, total)


async def fleet_state(handle: WorkflowHandle[Any, Any]) -> Snapshot:
    """Fleet: done / running / failed from its summary query, then its current details."""
    summary: FleetSummary = await handle.query(BackupAllProjectsWorkflow.summary)
    details = [line for line in (await current_details(handle)).splitlines() if line.strip()]
    return Snapshot("\n".join([fleet_line(summary), *details]))


@dataclass(frozen=True)
class View:
    poll: Callable[[WorkflowHandle[Any, Any]], Awaitable[Snapshot]]
    columns: tuple[ProgressColumn, ...]


TRANSFER = View(
    transfer_state,
    (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    ),
)
FLEET = View(fleet_state, (TextColumn("{task.description}"), TimeElapsedColumn()))


async def follow(
    handle: WorkflowHandle[Any, R], view: View = TRANSFER, console: Console | None = None
) -> R:
    """Show progress (on stderr) until the result arrives; returns it or raises its failure."""
    result_task = asyncio.ensure_future(handle.result())
    with Progress(*view.columns, console=console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=None)
        while not result_task.done():
            try:
                state = await view.poll(handle)
                bar.update(task, description=state.text, completed=state.done, total=state.total)
            except (RPCError, WorkflowQueryFailedError):
                pass  # not picked up yet, or just closed: the result tells
            await asyncio.wait([result_task], timeout=0.5)
    return await result_task
