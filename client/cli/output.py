"""How commands print: messages on stderr, results on stdout (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from rich.console import Console, RenderableType

from backup.settings import Settings
from client.render import Column, listing
from workflows.inputs import problems

console = Console(stderr=True)

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]
M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """A request the model refuses; the message names each field. The CLI exits 2."""


def build(model: type[M], **fields: Any) -> M:
    try:
        return model(**fields)
    except ValidationError as err:
        raise BadRequest(problems(err)) from None


def say(message: str) -> None:
    """A message for a person, printed as given (ids hold characters rich would style)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def fail(what: str, message: str) -> None:
    console.print(f"[red]{what}:[/red] ", end="")
    say(message)


def show(table: RenderableType) -> None:
    Console().print(table)


def show_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    if isinstance(value, BaseModel):
        print(value.model_dump_json(indent=2))
    else:
        print(json.dumps(value, indent=2))


def show_listing(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Rows whole at the terminal's width (80 when piped); what did not fit is said on stderr."""
    width = shutil.get_terminal_size().columns
    lines, hidden = listing(columns, rows, width)
    print("\n".join(lines))
    if hidden:
        say(f"({', '.join(hidden)} left out at {width} columns; --json shows every field)")
