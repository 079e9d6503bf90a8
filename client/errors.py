"""The client's own errors: what a person asked for does not exist, and failures told in one
line. The CLI prints them and exits 1; a library caller catches NotFound."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio.service import RPCError, RPCStatusCode


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


def root_cause(err: BaseException) -> str:
    """The innermost message: 'Activity task failed' says nothing to a person."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)
