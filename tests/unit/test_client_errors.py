"""The client's failures in one line: a missing thing as NotFound (from the server's NOT_FOUND
only), a failed workflow by the message of the error beneath Temporal's wrappers."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.service import RPCError, RPCStatusCode

from client.errors import NotFound, not_found_as, root_cause


def test_not_found_names_what_and_where_to_look() -> None:
    with (
        pytest.raises(NotFound) as caught,
        not_found_as("schedule 'x'", "starter.py schedule list"),
    ):
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
    assert str(caught.value) == "no schedule 'x' (see: starter.py schedule list)"


def test_other_server_errors_pass_unchanged() -> None:
    with pytest.raises(RPCError), not_found_as("schedule 'x'", "starter.py schedule list"):
        raise RPCError("denied", RPCStatusCode.PERMISSION_DENIED, b"")


def test_a_failed_backup_reads_as_its_own_message() -> None:
    ended = ApplicationError(
        "backup of project 'acme' failed during dumping: boom", type="BackupFailed"
    )
    assert root_cause(WorkflowFailureError(cause=ended)) == ended.message


def test_a_failed_activity_reads_as_the_step_error_not_the_wrapper() -> None:
    wrapper = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="w",
        activity_type="restore_backup",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    wrapper.__cause__ = ApplicationError("schema 'x' already exists", type="SchemaExists")
    assert root_cause(WorkflowFailureError(cause=wrapper)) == "schema 'x' already exists"
