"""export, fleet and list: start backups (followed to their end with --follow) and list them."""

from __future__ import annotations

import argparse
import re
from typing import Any

from backup.errors import InvalidRequest, error_type
from backup.fleet_models import FleetRequest
from backup.models import (
    PROJECT_ID_PATTERN,
    Compression,
    DumpFormat,
    ExportRequest,
)
from backup.settings import Settings
from client.cli.output import BadRequest, build, fail, show_json, show_listing
from client.cli.watching import after_start, watch_options
from client.connection import connect_with
from client.render import Column
from client.reports import NO_RUN
from client.starting import start_export, start_fleet
from workflows.search_attributes import BACKUP_STEP


async def export(args: argparse.Namespace, settings: Settings) -> int:
    compress = not args.no_compress and args.compression != Compression.NONE
    try:
        request = build(
            ExportRequest,
            project_id=args.project,
            format=args.format,
            compress=compress,
            compression=args.compression if compress else Compression.ZSTD,
            notify_email=args.notify_email,
            request_id=args.request_id,
            verify_restore=args.verify_restore,
        )
    except BadRequest as bad:
        if args.json:  # the failure report's shape, for scripts
            failure = {"status": "INVALID_REQUEST", "error_type": error_type(InvalidRequest)}
            show_json({**NO_RUN, **failure, "message": str(bad)})
        raise
    client = await connect_with(settings)
    return await after_start(await start_export(client, settings, request), client, settings, args)


async def fleet(args: argparse.Namespace, settings: Settings) -> int:
    request = build(
        FleetRequest,
        max_concurrent=args.max_concurrent,
        format=args.format,
        verify_restore=args.verify_restore,
    )
    client = await connect_with(settings)
    return await after_start(await start_fleet(client, settings, request), client, settings, args)


LIST_COLUMNS = (
    Column("WORKFLOW ID"),
    Column("STATUS"),
    Column("STARTED (UTC)", drop=2),
    Column("STEP", drop=1),
)


async def list_backups(args: argparse.Namespace, settings: Settings) -> int:
    query = "WorkflowType = 'ExportBackupWorkflow'"
    if args.project:
        # The pattern admits no quote, so the value can not break out of the literal.
        if re.fullmatch(PROJECT_ID_PATTERN, args.project) is None:
            fail("invalid project id", repr(args.project))
            return 2
        query += f" AND ProjectId = '{args.project}'"
    client = await connect_with(settings)
    found = [wf async for wf in client.list_workflows(query, limit=args.limit)]
    rows = [
        {
            "workflow_id": wf.id,
            "status": wf.status.name if wf.status else "?",
            "started_at": wf.start_time.isoformat(),
            "step": wf.typed_search_attributes.get(BACKUP_STEP) or "",
        }
        for wf in found
    ]
    if args.json:
        show_json(rows)
        return 0
    cells = [
        [r["workflow_id"], r["status"], f"{wf.start_time:%Y-%m-%d %H:%M:%S}", r["step"]]
        for r, wf in zip(rows, found, strict=True)
    ]
    show_listing(LIST_COLUMNS, cells)
    return 0


def add(sub: Any) -> None:
    p = sub.add_parser("export", help="back up one project")
    p.set_defaults(run=export)
    p.add_argument("--project", required=True)
    p.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    p.add_argument(
        "--compression",
        choices=[c.value for c in Compression],
        default=Compression.ZSTD.value,
        help="none stores pg_dump's output as is (like --no-compress)",
    )
    p.add_argument("--no-compress", action="store_true")
    p.add_argument("--notify-email")
    p.add_argument("--request-id", help="idempotency key: the same id never runs twice")
    p.add_argument(
        "--verify-restore",
        action="store_true",
        help="test-restore into a scratch database before uploading",
    )
    watch_options(p, "show progress until the result")

    p = sub.add_parser("fleet", help="back up every ACTIVE project now")
    p.set_defaults(run=fleet)
    p.add_argument("--max-concurrent", type=int, default=4, help="backups at once")
    p.add_argument("--format", choices=[f.value for f in DumpFormat], default="custom")
    p.add_argument("--verify-restore", action="store_true", help="test-restore each backup")
    watch_options(p, "show done / running / failed")

    p = sub.add_parser("list", help="recent backups")
    p.set_defaults(run=list_backups)
    p.add_argument("--project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
