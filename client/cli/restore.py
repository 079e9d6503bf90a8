"""restore: put a backup back under a new schema, or replace the project's schema."""

from __future__ import annotations

import argparse
from typing import Any

from backup.models import RestoreRequest
from backup.settings import Settings
from client.cli.output import build
from client.cli.watching import after_start, watch_options
from client.connection import connect_with
from client.starting import start_restore


async def restore(args: argparse.Namespace, settings: Settings) -> int:
    """Waits for the result: with --follow showing step, bytes and rate; exit 1 unless the
    restored rows match the manifest."""
    request = build(
        RestoreRequest,
        location=args.location,
        into_schema=args.into,
        database=args.database,
        replace=args.replace,
        confirm_replace=args.confirm_replace,
    )
    client = await connect_with(settings)
    handle = await start_restore(client, settings, request)
    return await after_start(handle, client, settings, args, wait=True)


def add(sub: Any) -> None:
    p = sub.add_parser(
        "restore", help="restore a backup under a new schema beside the original, or replace"
    )
    p.set_defaults(run=restore)
    p.add_argument("location", help="location from an export result")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--into", help="the new schema name")
    target.add_argument(
        "--replace",
        action="store_true",
        help="replace the project's schema (after a safety backup); needs --confirm-replace",
    )
    p.add_argument("--confirm-replace", action="store_true", help="yes, replace it")
    p.add_argument("--database", help="another database on the same server (with --into)")
    watch_options(p, "show step, bytes and rate meanwhile", "the result as JSON")
