"""How ExportBackupWorkflow shows its step: the progress query (exact at once), the Web UI's
current details, and the BackupStep search attribute, whose every upsert is a history event and
a visibility write, so it is sent only when it changes (and, since the store-step patch, only
when the run is about to wait)."""

from __future__ import annotations

from temporalio import workflow

from backup.models import Progress, Step
from workflows.search_attributes import BACKUP_STEP


class StepDisplay:
    """`local_steps`, `coalesce`: the run's LOCAL_STEPS and STORE_STEP patches. Before the
    first, every step entered was upserted; before the second, every change."""

    def __init__(self, progress: Progress, *, local_steps: bool, coalesce: bool) -> None:
        self.progress = progress
        self._local_steps, self._coalesce = local_steps, coalesce
        self._shown: Step | None = None  # the BackupStep search attribute's value

    def enter(self, step: Step, details: str | None = None) -> None:
        p = self.progress
        p.step = step
        if not self._coalesce and (step is not self._shown or not self._local_steps):
            self._upsert()
        lines = [f"**Step:** {step.value}", f"**Project:** {p.project_id}"]
        if p.host_queue:
            lines.append(f"**Host queue:** {p.host_queue} (attempt {p.host_attempt})")
        if p.size_bytes is not None:
            lines.append(f"**Artifact:** {p.size_bytes} bytes ({p.bytes_dumped} dumped)")
        if p.location:
            lines.append(f"**Location:** {p.location}")
        if details:
            lines.append(details)
        workflow.set_current_details("\n\n".join(lines))

    def show(self) -> None:
        """Call before awaiting a regular activity and at the run's end: with `coalesce`,
        BackupStep gets the latest step entered, so one workflow task upserts at most once
        (local activities are over within the task, nobody sees the steps between)."""
        if self._coalesce and self.progress.step is not self._shown:
            self._upsert()

    def _upsert(self) -> None:
        workflow.upsert_search_attributes([BACKUP_STEP.value_set(self.progress.step.value)])
        self._shown = self.progress.step
