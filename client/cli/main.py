"""The command line itself (starter.py runs it): the parser, built from each group's commands,
and the one place that turns a missing thing (exit 1) or a bad request (exit 2) into one line."""

from __future__ import annotations

import argparse

from backup.errors import ConfigurationError
from backup.settings import Settings
from client.cli import backups, restore, schedule, storage, watching
from client.cli.output import BadRequest, fail, say
from client.errors import NotFound


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Start and watch export backups.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (backups, watching, restore, storage, schedule):
        group.add(sub)
    return p


async def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_environment()
    except ConfigurationError as err:
        fail("configuration error", str(err))
        return 2
    try:
        code: int = await args.run(args, settings)
    except NotFound as missing:
        say(str(missing))
        return 1
    except BadRequest as bad:
        fail("invalid request", str(bad))
        return 2
    return code
