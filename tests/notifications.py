"""Sample notifications every notify test sends: one backup that succeeded, one that failed."""

from __future__ import annotations

from datetime import UTC, datetime

from backup.models import BackupEvent, DumpFormat, Notification, Step

LINK = "http://ui.example/namespaces/default/workflows/w/r/history"


def succeeded() -> Notification:
    return Notification(
        event=BackupEvent.SUCCEEDED,
        project_id="acme",
        workflow_id="export-backup-acme-1",
        run_id="run-1",
        notify_email="owner@example.com",
        location="s3://backups/acme/x.dump.zst",
        size_bytes=2_271_370,
        sha256="ab" * 32,
        table_count=5,
        format=DumpFormat.CUSTOM,
        duration_seconds=1.6,
        occurred_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )


def failed() -> Notification:
    return Notification(
        event=BackupEvent.FAILED,
        project_id="acme",
        workflow_id="export-backup-acme-2",
        run_id="run-2",
        notify_email="owner@example.com",
        failed_step=Step.DUMPING,
        error="pg_dump exited with code 1: connection refused",
        duration_seconds=3.0,
        occurred_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )
