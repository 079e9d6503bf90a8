"""How commands print: messages on stderr, results on stdout (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console, RenderableType

from backup.settings import Settings
from client.render import Column, listing

console = Console(stderr=True)

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


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
