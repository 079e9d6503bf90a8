"""What a person reads: the result of an export, a restore and a fleet backup as tables, and
listings that never shorten an id, a location or a schedule id (columns are dropped instead,
and `--json` shows everything)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from backup.fleet_models import FleetSummary
from backup.models import ExportResult, RestoreResult

GAP = "  "


def workflow_link(ui_url: str, namespace: str, workflow_id: str, run_id: str | None = None) -> str:
    return f"{ui_url}/namespaces/{namespace}/workflows/{workflow_id}" + (
        f"/{run_id}/history" if run_id else ""
    )


def _facts(title: str, rows: dict[str, str]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a long location wraps whole, never cut
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def result_table(result: ExportResult, ui_url: str, namespace: str) -> Table:
    return _facts(
        f"Backup of project {result.project_id}",
        {
            "location": result.location,
            "manifest": result.manifest_location,
            "size": f"{result.size_bytes:,} bytes ({result.raw_bytes:,} before compression)",
            "sha256": result.sha256,
            "tables": str(result.table_count),
            "format": f"{result.format} / {result.compression}",
            "schema": result.schema_name,
            "duration": f"{result.duration_seconds:.1f} s",
            "test restore": result.verification.describe() if result.verification else "not asked",
            "retention": retention_line(result),
            "dependencies": (
                result.dependencies.describe() if result.dependencies else "not recorded"
            ),
            "notifications": "\n".join(
                f"{n.channel}: {n.status}" + (f" ({n.error})" if n.error else "")
                for n in result.notifications
            ),
            "workflow": workflow_link(ui_url, namespace, result.workflow_id, result.run_id),
        },
    )


def retention_line(result: ExportResult) -> str:
    r = result.retention
    if r is None:
        return "not run"
    if r.skipped_reason or r.errors:
        return "; ".join([*([r.skipped_reason] if r.skipped_reason else []), *r.errors])
    return f"{r.policy}: kept {len(r.kept)}, pruned {len(r.pruned)}"


def restore_table(result: RestoreResult, link: str) -> Table:
    where = result.schema_name + (f" in database {result.database}" if result.database else "")
    rows = {
        "location": result.location,
        "restored as": where,
        "project": f"{result.project_id or '?'} (schema {result.source_schema or '?'})",
        "tables": str(result.table_count),
        "rows": f"{sum(result.row_counts.values()):,}",
        "verified": "rows match the manifest"
        if result.verified
        else "ROWS DIFFER from the manifest",
        "duration": f"{(result.finished_at - result.started_at).total_seconds():.1f} s",
    }
    if result.safety_backup_location:
        rows["safety backup"] = result.safety_backup_location
    if result.previous_schema:
        rows["previous schema"] = f"{result.previous_schema} (drop it once you are sure)"
    rows["workflow"] = link
    return _facts(f"Restore of project {result.project_id or '?'}", rows)


def fleet_line(summary: FleetSummary) -> str:
    """done / running / failed of a fleet backup, exact from its summary: a child counts in
    `total` from the moment it starts."""
    done = summary.succeeded + summary.skipped
    running = summary.total - done - summary.failed
    return f"done {done}, running {running}, failed {summary.failed}"


def fleet_table(summary: FleetSummary, link: str) -> Table:
    rows = {
        "projects": f"{summary.total}: {summary.succeeded} backed up, {summary.failed} failed"
        + (f", {summary.skipped} already done" if summary.skipped else ""),
        "runs": f"{summary.runs} (continue-as-new after each page)",
    }
    shown = summary.failures
    if shown:
        more = summary.failed - len(shown)
        rows["failures"] = "\n".join(f"{f.project_id}: {f.error}" for f in shown) + (
            f"\n… and {more} more" if more > 0 else ""
        )
    rows["workflow"] = link
    return _facts("Backup of all active projects", rows)


@dataclass(frozen=True)
class Column:
    title: str
    # Dropped first when the listing is too wide: lowest first; None: never (ids, locations).
    drop: int | None = None


def listing(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[list[str], list[str]]:
    """Aligned plain lines, every cell whole. Too wide: the droppable columns go, lowest
    `drop` first, while that makes it fit; when even the kept columns are wider than the
    terminal nothing is dropped (the terminal wraps a long line; a cut id is useless).
    Returns the lines and the titles of the columns left out."""
    widths = [max([len(c.title), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def span(indexes: list[int]) -> int:
        return sum(widths[i] for i in indexes) + len(GAP) * (len(indexes) - 1)

    kept = [i for i in shown if columns[i].drop is None]
    if span(kept) <= width:
        for i in sorted(set(shown) - set(kept), key=lambda i: columns[i].drop or 0):
            if span(shown) <= width:
                break
            shown.remove(i)
    lines = [
        GAP.join(row[i].ljust(widths[i]) for i in shown).rstrip()
        for row in [[c.title for c in columns], *rows]
    ]
    return lines, [columns[i].title for i in range(len(columns)) if i not in shown]
