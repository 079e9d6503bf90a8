"""Timeouts and retry policies of every workflow's activities (export, restore, fleet), one per
activity, chosen for what the activity does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from backup import errors

# Errors that no retry can fix (each error class says so itself): the workflow fails (or
# re-dumps) at once instead.
PERMANENT = list(errors.PERMANENT)


@dataclass(frozen=True)
class Policy:
    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    # Only for activities pinned to a host: how long the host may stay silent before the
    # workflow decides it is gone.
    schedule_to_start: timedelta | None = None


def _retry(initial: float, maximum: float, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=attempts,
        non_retryable_error_types=PERMANENT,
    )


# How long a pinned activity may wait for its host before the host counts as gone. A busy host
# (all activity slots taken by long dumps) can also hit it: the run then moves, never stalls.
HOST_START_TIMEOUT = timedelta(minutes=3)
# How many hosts a run may try before giving up (host lost or its spool lost).
MAX_HOST_ATTEMPTS = 3

# A short query; the database may be restarting, so keep trying for a few minutes.
VALIDATE = Policy(timedelta(seconds=30), _retry(1, 30, 10))
# Answered by any live worker at once.
CLAIM_HOST = Policy(timedelta(seconds=10), _retry(1, 10, 0))
# Dumps may take 30 minutes and more; a crashed worker is noticed by its missing heartbeat.
DUMP = Policy(timedelta(hours=6), _retry(10, 300, 5), timedelta(minutes=1), HOST_START_TIMEOUT)
# Re-hashes the spool file: disk speed, seconds per GB.
# It heartbeats, so a crash mid-verify is noticed within a minute, not after 30.
VERIFY = Policy(timedelta(minutes=30), _retry(5, 60, 3), timedelta(minutes=1), HOST_START_TIMEOUT)
# A restore into a scratch database: as long as a dump, and as observable.
VERIFY_RESTORE = Policy(
    timedelta(hours=6), _retry(10, 120, 3), timedelta(minutes=1), HOST_START_TIMEOUT
)
# Network transfers fail transiently; the storage key is fixed, so a retry overwrites.
UPLOAD = Policy(timedelta(hours=6), _retry(5, 120, 10), timedelta(minutes=1), HOST_START_TIMEOUT)
# Verify, upload, remove the spool (store_artifact): the upload's budget and timeouts. A verify
# failure that matters is permanent (ArtifactCorrupted, BackupTooLarge): no retry wastes it.
STORE = UPLOAD
# back_up_small_schema, a local activity: dump, verify, upload, remove the spool of a schema of
# at most SMALL_SCHEMA_MAX_BYTES, seconds. The budget allows a long wait for a dump slot; no
# heartbeat (a worker that dies takes its workflow task with it: the next one redoes the step).
SMALL_BACKUP = Policy(timedelta(minutes=30), _retry(5, 60, 5))
# Best effort: a spool left behind is swept when the worker starts.
# Seconds of work (remove files, abort uploads, drop a scratch database): a crash is retried soon.
CLEANUP = Policy(timedelta(minutes=2), _retry(2, 30, 5), None, HOST_START_TIMEOUT)
# Lists and deletes a project's old backups; never fails a backup (problems are reported).
RETENTION = Policy(timedelta(minutes=10), _retry(5, 60, 3))
# Bounded: a notification must never hold a finished backup hostage.
NOTIFY = Policy(timedelta(minutes=2), _retry(5, 60, 3))  # runs before per-channel delivery
PLAN_NOTIFY = Policy(timedelta(seconds=30), _retry(1, 10, 5))
# One channel, then recorded: 6 attempts 5, 10, 20, 40 and 60 s apart, so 135 s (about 2¼
# minutes) when the server refuses at once, at most 495 s (about 8¼ minutes) when every attempt
# hangs until its 60-second timeout.
DELIVER = Policy(timedelta(seconds=60), _retry(5, 60, 6))

# BackupAllProjectsWorkflow: one page of active project ids, the same short query as VALIDATE.
LIST_PROJECTS = VALIDATE

# RestoreBackupWorkflow. A restore lasts as long as a dump; it heartbeats every second, so a dead
# worker is noticed in 20 s and the restore retried (each attempt starts clean).
RESTORE = Policy(timedelta(hours=6), _retry(10, 120, 3), timedelta(seconds=20))
# Renames or drops in one short transaction (swap, drop the stage, drop the leftovers of a failed
# run); the database may be restarting.
SWAP = Policy(timedelta(minutes=5), _retry(1, 30, 10))
