"""The spool: local disk where a run's artifact waits between dump and upload.

One directory per workflow run (its run key), so a retried dump replaces its own files and a
restarted worker on the same host finds what it left.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def run_dir(spool_root: Path, run_key: str) -> Path:
    path = spool_root / run_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_run(spool_root: Path, run_key: str) -> bool:
    """Remove a run's spool directory; True when something was removed."""
    path = spool_root / run_key
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def sweep_stale(spool_root: Path, max_age_hours: float) -> list[str]:
    """Remove run directories untouched for longer than max_age_hours (their runs are over)."""
    if not spool_root.exists():
        return []
    cutoff = time.time() - max_age_hours * 3600
    removed = []
    for entry in spool_root.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


SCRATCH_MARKER = "scratch-database"


def scratch_database_name(run_path: Path, run_key: str) -> str:
    """The test-restore database of a run, noted in its spool so cleanup can drop it after a
    crash. Deterministic, so a retried attempt replaces its predecessor's."""
    name = "export_backup_verify_" + run_key.replace("-", "")[:32]
    (run_path / SCRATCH_MARKER).write_text(name)
    return name


def scratch_database_of(spool_root: Path, run_key: str) -> str | None:
    marker = spool_root / run_key / SCRATCH_MARKER
    return marker.read_text().strip() if marker.exists() else None
