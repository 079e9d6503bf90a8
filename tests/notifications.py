"""Sample notifications every notify test sends: one backup that succeeded, one that failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backup.models import BackupEvent, DumpFormat, Notification, Step

LINK = "http://ui.example/namespaces/default/workflows/w/r/history"


def _notification(event: BackupEvent, run: int, **fields: Any) -> Notification:
    return Notification(
        event=event,
        project_id="acme",
        workflow_id=f"export-backup-acme-{run}",
        run_id=f"run-{run}",
        notify_email="owner@example.com",
        occurred_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        **fields,
    )


def succeeded() -> Notification:
    return _notification(
        BackupEvent.SUCCEEDED,
        1,
        location="s3://backups/acme/x.dump.zst",
        size_bytes=2_271_370,
        sha256="ab" * 32,
        table_count=5,
        format=DumpFormat.CUSTOM,
        duration_seconds=1.6,
    )


def failed() -> Notification:
    return _notification(
        BackupEvent.FAILED,
        2,
        failed_step=Step.DUMPING,
        error="pg_dump exited with code 1: connection refused",
        duration_seconds=3.0,
    )
