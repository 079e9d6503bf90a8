"""The client's own errors: what a person asked for does not exist, and a failed workflow told
in one line. The CLI prints them and exits 1; a library caller catches NotFound."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from workflows.failures import root_message


class NotFound(LookupError):
    """`what` (e.g. "workflow 'x' in namespace default") does not exist; `hint` says where to
    look for what does."""

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(f"no {what} (see: {hint})")
        self.what, self.hint = what, hint


@contextlib.contextmanager
def not_found_as(what: str, hint: str) -> Iterator[None]:
    """Turn the server's NOT_FOUND into NotFound; every other error passes as it is."""
    try:
        yield
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise NotFound(what, hint) from None


def root_cause(err: WorkflowFailureError) -> str:
    """What a person reads when a workflow failed: the message of the error it ended with, or of
    the step's error beneath the activity and child-workflow wrappers ("Activity task failed"
    says nothing); the same words the workflows put in notifications (root_message)."""
    return root_message(err.cause or err)
