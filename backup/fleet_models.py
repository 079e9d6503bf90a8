"""Input and result of BackupAllProjectsWorkflow (docs/contract.md "Fleet backup").

The input also carries what one run hands to the next through continue-as-new: the keyset
cursor and the summary so far.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from backup.models import DumpFormat

# The failure list travels in every continue-as-new input and in the result: keep it bounded.
MAX_REPORTED_FAILURES = 100


class ProjectPage(BaseModel):
    """Input of list_active_projects_v2: up to `limit` ACTIVE project ids after `after` (keyset;
    None: from the start), in id order."""

    after: str | None = None
    limit: int = Field(ge=1)


class ProjectFailure(BaseModel):
    project_id: str
    error: str


class FleetSummary(BaseModel):
    """Counts over every run so far; `failures` lists the first MAX_REPORTED_FAILURES only,
    `failed` counts them all."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    # Children that already existed under their id (a rerun of the same fleet workflow id):
    # completed or still running, so not started again.
    skipped: int = 0
    failures: list[ProjectFailure] = Field(default_factory=list)
    runs: int = 0

    def record_failure(self, project_id: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(ProjectFailure(project_id=project_id, error=error))


class FleetProgress(BaseModel):
    """What a running fleet backup has done so far (the `progress` query): over every run of the
    workflow, continue-as-new included. `listed` counts the projects listed so far; while
    `more_to_list` is true further pages may add to it."""

    done: int = 0  # backed up (or found already done by an earlier run under this id)
    running: int = 0
    failed: int = 0
    waiting: int = 0  # listed, not started yet
    listed: int = 0
    more_to_list: bool = True
    running_projects: list[str] = Field(default_factory=list)

    def line(self) -> str:
        """The one-line form the fleet's current details and the CLI show."""
        of = f"{self.listed}{'+' if self.more_to_list else ''}"
        return f"done {self.done} · running {self.running} · failed {self.failed} of {of}"


class FleetRequest(BaseModel):
    """Input of BackupAllProjectsWorkflow: one JSON object, every field optional."""

    model_config = ConfigDict(extra="forbid")

    # Child backups running at once. Each worker's MAX_CONCURRENT_DUMPS bounds the pg_dumps on
    # its host; the others wait there, holding no database connection.
    max_concurrent: int = Field(default=16, ge=1, le=100)
    # Projects per workflow run; the next page runs after continue-as-new, so history stays small.
    page_size: int = Field(default=100, ge=1, le=1000)
    # Passed to every ExportBackupWorkflow.
    format: DumpFormat = DumpFormat.CUSTOM
    verify_restore: bool = False
    # Carried over by continue-as-new: the last project id done (keyset), and the summary so far.
    cursor: Annotated[str, StringConstraints(max_length=1024)] | None = None
    summary: FleetSummary = Field(default_factory=FleetSummary)
