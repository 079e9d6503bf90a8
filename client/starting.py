"""Starting the three workflows the way every client of this project should: the id policies,
the ProjectId search attribute and a summary a person reads in the Web UI."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.types import MethodAsyncSingleParam

from backup.fleet_models import FleetRequest, FleetSummary
from backup.models import (
    ExportRequest,
    ExportResult,
    RestoreRequest,
    RestoreResult,
    export_workflow_id,
)
from backup.settings import Settings
from workflows.export_backup import ExportBackupWorkflow
from workflows.fleet import BackupAllProjectsWorkflow
from workflows.restore_backup import RestoreBackupWorkflow
from workflows.search_attributes import PROJECT_ID

# The fleet backup started by hand; scheduled ones get the schedule's id plus the time.
FLEET_WORKFLOW_ID = "backup-all-projects"

W = TypeVar("W")
R = TypeVar("R")


def workflow_id_for(project_id: str, request_id: str | None = None) -> str:
    """export-backup-{project_id}-{request_id}: the same request never runs twice."""
    return export_workflow_id(project_id, request_id or uuid.uuid4().hex[:12])


async def start_export(
    client: Client, settings: Settings, request: ExportRequest
) -> WorkflowHandle[Any, ExportResult]:
    """Start the backup of one project. A repeated request_id joins the running backup, or
    returns the finished one (a failed one is started again)."""
    workflow_id = workflow_id_for(request.project_id, request.request_id)
    try:
        return await _start(
            client,
            settings,
            ExportBackupWorkflow.run,
            request.model_dump(mode="json", exclude_none=True),
            workflow_id,
            f"Export backup of project {request.project_id} ({request.format})",
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PROJECT_ID, request.project_id)]
            ),
        )
    except WorkflowAlreadyStartedError as done:
        return client.get_workflow_handle(workflow_id, run_id=done.run_id, result_type=ExportResult)


async def start_restore(
    client: Client, settings: Settings, request: RestoreRequest
) -> WorkflowHandle[Any, RestoreResult]:
    target = f"schema {request.into_schema}" if request.into_schema else "the project's schema"
    body = request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    workflow_id = f"restore-backup-{request.into_schema or 'replace'}-{uuid.uuid4().hex[:8]}"
    summary = f"Restore {request.location} as {target}"
    return await _start(client, settings, RestoreBackupWorkflow.run, body, workflow_id, summary)


async def start_fleet(
    client: Client, settings: Settings, request: FleetRequest
) -> WorkflowHandle[Any, FleetSummary]:
    """Back up every ACTIVE project now. While one fleet backup runs, starting another joins
    it; a finished one is started again."""
    body = request.model_dump(mode="json", exclude_defaults=True)
    summary = f"Backup of all active projects ({request.format})"
    join = WorkflowIDConflictPolicy.USE_EXISTING
    run = BackupAllProjectsWorkflow.run
    return await _start(
        client, settings, run, body, FLEET_WORKFLOW_ID, summary, id_conflict_policy=join
    )


async def _start(
    client: Client,
    settings: Settings,
    run: MethodAsyncSingleParam[W, Any, R],
    body: dict[str, Any],
    workflow_id: str,
    summary: str,
    **policies: Any,
) -> WorkflowHandle[W, R]:
    """Every start: the input as plain JSON (what the CLI, the TypeScript client and
    `temporal workflow start` send alike), the deployment's task queue, a summary for the Web UI."""
    return await client.start_workflow(
        run,
        body,
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        static_summary=summary,
        **policies,
    )
