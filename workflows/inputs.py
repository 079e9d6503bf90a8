"""Workflow inputs are validated inside the workflow, not by the data converter: a converter
error would fail the workflow task in a loop, while this fails the workflow at once, naming the
field, with a non-retryable InvalidRequest."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from backup.errors import InvalidRequest, error_type

M = TypeVar("M", bound=BaseModel)


def parse_input(model: type[M], raw: Any, workflow_name: str) -> M:
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        raise ApplicationError(
            f"invalid {workflow_name} input: {problems(err)}",
            type=error_type(InvalidRequest),
            non_retryable=True,
        ) from None


def problems(err: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in err.errors()
    )
