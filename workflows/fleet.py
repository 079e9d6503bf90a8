"""BackupAllProjectsWorkflow: one ExportBackupWorkflow child per ACTIVE project.

A run lists one page of projects (keyset cursor), backs them up as child workflows with at most
`max_concurrent` running at once, then continues as new with the cursor and the summary so
far, so the history of a fleet of any size stays small. A failed project is recorded in the
summary, never fatal.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.fleet import FleetActivities
    from backup.fleet_models import FleetProgress, FleetRequest, FleetSummary, ProjectPage
    from workflows.activity_calls import call_activity
    from workflows.failures import root_message
    from workflows.inputs import parse_input
    from workflows.policies import LIST_PROJECTS
    from workflows.search_attributes import PROJECT_ID


# Running projects named in the details and the progress query (max_concurrent may be 100).
MAX_SHOWN_RUNNING = 20
# workflow.patched marker: max_concurrent defaults to FleetRequest's 16, not 4. Four children
# at once left a fleet of tiny tenants bound by one backup's latency (2.6 backups/s), while
# each worker's MAX_CONCURRENT_DUMPS still bounds the pg_dumps on a host. Runs started
# before keep 4.
WIDER_DEFAULT = "fleet-max-concurrent-16"
OLD_DEFAULT_MAX_CONCURRENT = 4
# workflow.patched marker: the page is listed by list_active_projects_v2, which takes one
# ProjectPage; runs started before replay the two-argument list_active_projects they scheduled.
TYPED_LISTING = "fleet-typed-listing"


def child_workflow_id(parent_workflow_id: str, project_id: str) -> str:
    """Fixed per fleet workflow id and project: a rerun under the same id (or a replayed page
    after a reset) never backs a project up twice."""
    return f"{parent_workflow_id}-{project_id}"


@workflow.defn(name="BackupAllProjectsWorkflow")
class BackupAllProjectsWorkflow:
    def __init__(self) -> None:
        self._summary = FleetSummary()
        self._running: list[str] = []
        self._listed = 0  # projects listed over every run so far
        self._more_to_list = True

    @workflow.query(name="summary")
    def summary(self) -> FleetSummary:
        return self._summary

    @workflow.query(name="progress")
    def progress(self) -> FleetProgress:
        s = self._summary
        done = s.succeeded + s.skipped
        return FleetProgress(
            done=done,
            running=len(self._running),
            failed=s.failed,
            waiting=max(0, self._listed - done - s.failed - len(self._running)),
            listed=self._listed,
            more_to_list=self._more_to_list,
            running_projects=self._running[:MAX_SHOWN_RUNNING],
        )

    @workflow.run
    async def run(self, request: Any = None) -> FleetSummary:
        """`request` is one JSON object (FleetRequest); typed Any so bad input fails at once
        naming the field, as ExportBackupWorkflow does."""
        req = parse_input(FleetRequest, request, "BackupAllProjectsWorkflow")
        # Continue-as-new carries every field, so only a first run can lack the setting.
        if "max_concurrent" not in req.model_fields_set and not workflow.patched(WIDER_DEFAULT):
            req.max_concurrent = OLD_DEFAULT_MAX_CONCURRENT
        self._summary = req.summary.model_copy(deep=True)
        self._summary.runs += 1
        self._listed = self._summary.total
        self._show(f"Listing projects after {req.cursor!r}" if req.cursor else "Listing projects")
        page = await self._list(req)
        # Every child of the runs before this one has finished: they are all in the summary.
        self._listed = self._summary.total + len(page)
        self._more_to_list = len(page) == req.page_size
        if page:
            slots = asyncio.Semaphore(req.max_concurrent)
            await asyncio.gather(*(self._backup(project, req, slots) for project in page))
        if len(page) < req.page_size:
            self._show("Done")
            return self._summary
        self._show(f"Page done; continuing after {page[-1]!r}")
        # Every child of this run has closed, so the parent close policy touches none of them.
        workflow.continue_as_new(
            req.model_copy(update={"cursor": page[-1], "summary": self._summary})
        )

    async def _list(self, req: FleetRequest) -> list[str]:
        summary = f"List up to {req.page_size} active projects after {req.cursor or 'the start'}"
        if workflow.patched(TYPED_LISTING):
            return await call_activity(
                FleetActivities.list_active_projects_v2,
                LIST_PROJECTS,
                summary,
                ProjectPage(after=req.cursor, limit=req.page_size),
            )
        page: list[str] = await workflow.execute_activity(
            FleetActivities.list_active_projects,
            args=[req.cursor, req.page_size],
            start_to_close_timeout=LIST_PROJECTS.start_to_close,
            retry_policy=LIST_PROJECTS.retry,
            summary=summary,
        )
        return page

    async def _backup(self, project_id: str, req: FleetRequest, slots: asyncio.Semaphore) -> None:
        async with slots:
            self._summary.total += 1
            self._running.append(project_id)
            self._show()
            try:
                await workflow.execute_child_workflow(
                    "ExportBackupWorkflow",
                    self._export_request(project_id, req),
                    id=child_workflow_id(workflow.info().workflow_id, project_id),
                    # Cancelling the fleet cancels its backups, which then clean up their spool
                    # and notify; TERMINATE would skip both, ABANDON would leave them running
                    # unsupervised, outside the concurrency bound.
                    parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    # A completed backup under this id is not run again; a failed one is.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    search_attributes=TypedSearchAttributes(
                        [SearchAttributePair(PROJECT_ID, project_id)]
                    ),
                    static_summary=f"Export backup of project {project_id} ({req.format})",
                )
                self._summary.succeeded += 1
            except WorkflowAlreadyStartedError:
                self._summary.skipped += 1
            except ChildWorkflowError as err:
                self._summary.record_failure(project_id, root_message(err))
            finally:
                self._running.remove(project_id)
                self._show()

    @staticmethod
    def _export_request(project_id: str, req: FleetRequest) -> dict[str, Any]:
        # Only what differs from ExportRequest's defaults, as a person would write it.
        body: dict[str, Any] = {"project_id": project_id, "format": req.format.value}
        if req.verify_restore:
            body["verify_restore"] = True
        return body

    def _show(self, note: str | None = None) -> None:
        s = self._summary
        lines = [
            f"**Progress:** {self.progress().line()}",
            f"**Run:** {s.runs}",
            f"**Projects:** {s.total} started, {s.succeeded} succeeded, {s.failed} failed"
            + (f", {s.skipped} already done" if s.skipped else ""),
        ]
        if self._running:
            shown = self._running[:MAX_SHOWN_RUNNING]
            more = len(self._running) - len(shown)
            lines.append(f"**Running:** {', '.join(shown)}" + (f" and {more} more" if more else ""))
        if s.failures:
            lines.append(f"**Last failure:** {s.failures[-1].project_id}: {s.failures[-1].error}")
        if note:
            lines.append(note)
        workflow.set_current_details("\n\n".join(lines))
