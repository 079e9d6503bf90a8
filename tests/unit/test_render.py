"""What a person reads in an 80-column terminal: every id, location and schedule id whole (a
column is dropped instead, and said so), and the result tables of a restore and a fleet."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from backup.fleet_models import FleetSummary, ProjectFailure
from backup.models import Compression, DumpFormat, ExportResult, RestoreResult
from client.cli import schedule
from client.cli.backups import LIST_COLUMNS
from client.render import (
    Column,
    fleet_line,
    fleet_table,
    listing,
    restore_table,
    result_table,
)

LONG_ID = "export-backup-globex-" + "r" * 64  # the longest request id: 85 characters
LOCATION = "s3://backups/tenants/globex/20261126T120000Z-abcdef1234567890.dump.zst"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def rendered(table: Table, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def unfolded(text: str) -> str:
    """The table's text with its borders and line breaks gone: a wrapped value reads whole."""
    return "".join(ch for ch in text if ch not in "│┃║|\n ")


def test_schedule_list_at_80_columns_keeps_ids_whole_and_drops_the_least_needed() -> None:
    rows = [
        [
            "export-backup-umbrella",
            "ExportBackupWorkflow",
            "30 4 * * 1-5",
            "Europe/Berlin",
            "yes",
            "2026-12-03 04:30",
        ],
        [
            "export-backup-fleet",
            "BackupAllProjectsWorkflow",
            "@daily",
            "UTC",
            "no",
            "2026-12-03 00:00",
        ],
    ]
    lines, hidden = listing(schedule.COLUMNS, rows, 80)
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].split()[:2] == ["export-backup-umbrella", "ExportBackupWorkflow"]
    assert lines[2].split()[:2] == ["export-backup-fleet", "BackupAllProjectsWorkflow"]
    assert "…" not in "".join(lines)
    assert hidden == ["TIME ZONE", "NEXT RUN (UTC)"]  # the paused flag and the cron stay
    assert "yes" in lines[1].split() and "30 4 * * 1-5" in lines[1]


def test_a_wide_terminal_shows_every_column() -> None:
    rows = [["export-backup-acme", "ExportBackupWorkflow", "@daily", "UTC", "no", "x"]]
    lines, hidden = listing(schedule.COLUMNS, rows, 200)
    assert hidden == []
    assert lines[0].startswith("SCHEDULE ID") and lines[0].endswith("NEXT RUN (UTC)")


def test_an_id_wider_than_the_terminal_is_printed_whole_with_every_column() -> None:
    """Dropping columns can not make an 85-character id fit: nothing is dropped, nothing cut."""
    rows = [[LONG_ID, "COMPLETED", "2026-11-26 12:00:00", "completed"]]
    lines, hidden = listing(LIST_COLUMNS, rows, 80)
    assert hidden == []
    assert lines[1].split() == [LONG_ID, "COMPLETED", "2026-11-26", "12:00:00", "completed"]


def test_columns_go_lowest_drop_first_and_kept_ones_never() -> None:
    columns = [Column("ID"), Column("A", drop=2), Column("B", drop=1), Column("C")]
    rows = [["i" * 30, "a" * 20, "b" * 20, "c" * 20]]
    lines, hidden = listing(columns, rows, 80)
    assert hidden == ["B"] and lines[1].split() == ["i" * 30, "a" * 20, "c" * 20]
    lines, hidden = listing(columns, rows, 60)
    assert hidden == ["A", "B"] and lines[1].split() == ["i" * 30, "c" * 20]


def test_the_restore_table_names_the_location_and_verdict_whole_at_80_columns() -> None:
    result = RestoreResult(
        location=LOCATION,
        schema_name="globex_restored_1a2b3c",
        database=None,
        table_count=5,
        row_counts={"a": 1200, "b": 34},
        verified=True,
        started_at=NOW,
        finished_at=NOW.replace(second=42),
        project_id="globex",
        source_schema="globex",
        safety_backup_location=LOCATION.replace("abcdef", "fedcba"),
    )
    link = "http://localhost:8233/namespaces/default/workflows/restore-backup-globex_restored-1"
    text = rendered(restore_table(result, link))
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = unfolded(text)
    for whole in (LOCATION, result.safety_backup_location, link, "globex_restored_1a2b3c"):
        assert whole and whole.replace(" ", "") in flat
    assert "1,234" in text and "rows match the manifest" in text and "42.0 s" in text
    assert "…" not in text


def test_a_restore_whose_rows_differ_says_so() -> None:
    result = RestoreResult(
        location=LOCATION,
        schema_name="x",
        database="other",
        table_count=1,
        row_counts={"a": 1},
        verified=False,
        started_at=NOW,
        finished_at=NOW,
    )
    text = rendered(restore_table(result, "link"))
    assert "ROWS DIFFER" in text and "x in database other" in text


def test_fleet_counts_done_running_and_failed() -> None:
    summary = FleetSummary(total=7, succeeded=3, skipped=1, failed=2)
    assert fleet_line(summary) == "done 4, running 1, failed 2"


def test_the_fleet_table_lists_every_failure_and_says_how_many_more() -> None:
    failures = [ProjectFailure(project_id=f"p{i}", error="pg_dump failed") for i in range(2)]
    summary = FleetSummary(total=9, succeeded=5, failed=4, failures=failures, runs=2)
    text = rendered(fleet_table(summary, "http://ui/namespaces/default/workflows/backup-all"))
    assert "9: 5 backed up, 4 failed" in text
    assert "p0: pg_dump failed" in text and "p1: pg_dump failed" in text
    assert "and 2 more" in text


def test_the_export_table_keeps_location_and_workflow_link_whole_at_80_columns() -> None:
    result = ExportResult(
        project_id="globex",
        schema_name="globex",
        location=LOCATION,
        manifest_location=LOCATION + ".manifest.json",
        size_bytes=2048,
        raw_bytes=8192,
        sha256="ab" * 32,
        table_count=5,
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        started_at=NOW,
        finished_at=NOW,
        duration_seconds=1.5,
        workflow_id=LONG_ID,
        run_id="0194d3c2-run",
    )
    text = rendered(result_table(result, "http://localhost:8233", "default"))
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = unfolded(text)
    assert LOCATION in flat and result.sha256 in flat
    assert f"http://localhost:8233/namespaces/default/workflows/{LONG_ID}/0194d3c2-run" in flat
