"""What a failure says, read through Temporal's wrappers: one wording for the workflows'
notifications, the fleet summary and the client's one-line errors."""

from __future__ import annotations

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    TimeoutError,
    TimeoutType,
)

from backup.errors import ArtifactCorrupted, error_type


def root_failure(err: BaseException) -> BaseException:
    """The error that says what went wrong: through the activity and child-workflow wrappers,
    but not past a domain error into the library exception beneath it (a StorageError, not the
    EndpointConnectionError that caused it)."""
    while isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause is not None:
        err = err.cause
    return err


def root_message(err: BaseException) -> str:
    root = root_failure(err)
    return root.message if isinstance(root, FailureError) else str(root) or type(root).__name__


def root_type(err: BaseException) -> str:
    """The error type other programs match on (backup.errors names, or Timeout<kind>)."""
    root = root_failure(err)
    if isinstance(root, ApplicationError) and root.type:
        return root.type
    if isinstance(root, TimeoutError):
        return f"Timeout{root.type.name if root.type else ''}"
    return type(root).__name__


def host_lost(err: ActivityError) -> bool:
    """A pinned activity's host is gone (it never picked the task up) or so is its spool."""
    cause = err.cause
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
        return True
    return isinstance(cause, ApplicationError) and cause.type == error_type(ArtifactCorrupted)
