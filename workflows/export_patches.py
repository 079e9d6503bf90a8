"""ExportBackupWorkflow's patches (workflow.patched markers): which path a run took, so that it
replays on the code it was recorded with. Each marker is a history event, so a run started on
today's code records one (small-schema), which stands for every older one."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

# Retention runs after each successful backup.
RETENTION_AFTER_BACKUP = "retention-after-backup"
# Notifications went from one activity to one activity per channel.
PER_CHANNEL_NOTIFY = "per-channel-notify"
# The short steps any worker answers (validate, claim a host, plan the notifications,
# retention) run as local activities of the worker running the workflow task: each regular
# activity costs the server a task dispatch and the run a workflow task, which made up most of
# a tiny backup's cost (docs/performance.md).
LOCAL_STEPS = "local-steps"
# On top of LOCAL_STEPS: verify, upload and the spool's removal run as one activity
# (store_artifact), so a success needs no cleanup activity but for hosts lost mid-run; the other
# multi-argument activities take one input model (*_v2); BackupStep is upserted at most once per
# workflow task, when the run is about to wait.
STORE_STEP = "store-step"
# On top of STORE_STEP (and the two above): a schema the validation found small is backed up by
# one local activity (back_up_small_schema: dump, verify, upload, remove the spool), so a tiny
# backup takes two workflow tasks and no dispatch but its notifications' (issue 13).
SMALL_SCHEMA = "small-schema"


@dataclass(frozen=True)
class ExportPatches:
    small_schema: bool
    local_steps: bool
    store_step: bool

    @classmethod
    def of_this_run(cls) -> ExportPatches:
        """Asked at the run's start, newest first: a run that has the newest needs no marker of
        the older ones."""
        if workflow.patched(SMALL_SCHEMA):
            return cls(small_schema=True, local_steps=True, store_step=True)
        local_steps = workflow.patched(LOCAL_STEPS)
        return cls(
            small_schema=False,
            local_steps=local_steps,
            store_step=local_steps and workflow.patched(STORE_STEP),
        )

    # The two below are asked where runs recorded before small-schema asked them.

    def retention_after_backup(self) -> bool:
        return self.small_schema or workflow.patched(RETENTION_AFTER_BACKUP)

    def per_channel_notify(self) -> bool:
        return self.small_schema or workflow.patched(PER_CHANNEL_NOTIFY)
