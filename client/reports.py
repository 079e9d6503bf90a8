"""A failed workflow as a script reads it (`--json`): the same keys whatever failed."""

from __future__ import annotations

import contextlib
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

# The keys of failure_report, for a failure before any workflow ran.
NO_RUN: dict[str, Any] = dict.fromkeys(
    ("workflow_id", "run_id", "status", "error_type", "message", "failed_step")
)


async def failure_report(
    handle: WorkflowHandle[Any, Any], err: WorkflowFailureError
) -> dict[str, Any]:
    """What a script needs from a failed backup; BackupFailed carries the step and the root
    error type in its details (workflows/export_backup.py)."""
    cause = err.cause
    details: dict[str, Any] = {}
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        details = cause.details[0]
    status, run_id = None, handle.result_run_id
    with contextlib.suppress(RPCError):  # the report must not fail on a second server error
        description = await handle.describe()
        status = description.status.name if description.status else None
        run_id = description.run_id
    default_type = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
    return {
        "workflow_id": handle.id,
        "run_id": run_id,
        "status": status,
        "error_type": details.get("error_type") or default_type,
        "message": str(cause),
        "failed_step": details.get("failed_step"),
    }
