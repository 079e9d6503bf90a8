"""The spool: local disk where a run's artifact waits between dump and upload.

One directory per workflow run (its run key), so a retried dump replaces its own files and a
restarted worker on the same host finds what it left.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from backup.errors import ConfigurationError, SpoolFull


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
# The upload's resumable state beside the artifact: parts sent while dumping and after.
UPLOAD_JOURNAL = "upload-state.json"


def reserve_scratch_database(run_path: Path, run_key: str) -> str:
    """The test-restore database of a run, noted in its spool so cleanup can drop it after a
    crash. Deterministic, so a retried attempt replaces its predecessor's."""
    name = "export_backup_verify_" + run_key.replace("-", "")[:32]
    (run_path / SCRATCH_MARKER).write_text(name)
    return name


def refuse_streamed(artifact: Path, spool_mode: str) -> None:
    """A test restore needs the artifact on this host; SPOOL_MODE=stream sent it to S3 without
    keeping it (all but one-part artifacts), and the object is not visible before the test."""
    if spool_mode == "stream" and not artifact.exists():
        raise ConfigurationError(
            "verify_restore needs the artifact on the worker's spool, and SPOOL_MODE=stream "
            "kept none (the dump went straight to S3): run test restores on workers with "
            "SPOOL_MODE=spool, or start the backup without verify_restore and test it with "
            "RestoreBackupWorkflow"
        )


def scratch_database_of(spool_root: Path, run_key: str) -> str | None:
    marker = spool_root / run_key / SCRATCH_MARKER
    return marker.read_text().strip() if marker.exists() else None


# What compression gives at least on typical tenant data, for the estimate of a compressed dump.
# Deliberately low: refusing a dump that would have fitted is worse than an ENOSPC mid-write,
# which ends in the same SpoolFull error anyway.
ASSUMED_COMPRESSION_RATIO = 2


def spool_bytes_needed(data_bytes: int, *, compressed: bool, staged: bool, max_bytes: int) -> int:
    """Spool bytes a dump of `data_bytes` of table data needs: the artifact (never more than
    BACKUP_MAX_BYTES, where the dump is stopped), plus pg_dump's own uncompressed output when
    it is staged on the spool first (directory format)."""
    artifact = data_bytes // ASSUMED_COMPRESSION_RATIO if compressed else data_bytes
    return min(artifact, max_bytes) + (data_bytes if staged else 0)


def ensure_free_space(spool_root: Path, needed: int, margin: int) -> None:
    """Fail fast, before pg_dump starts, when the spool disk can not hold the dump plus
    `margin` (SPOOL_MIN_FREE_BYTES): better a clear error now than ENOSPC an hour in."""
    free = shutil.disk_usage(spool_root).free
    if free < needed + margin:
        raise SpoolFull(
            f"not enough free space in SPOOL_DIR {spool_root}: the dump needs about {needed} "
            f"bytes plus SPOOL_MIN_FREE_BYTES={margin}, and {free} bytes are free; free space "
            "there, point SPOOL_DIR at a larger disk, or lower SPOOL_MIN_FREE_BYTES"
        )


@contextlib.contextmanager
def out_of_space_is_spool_full(spool_root: Path) -> Iterator[None]:
    """ENOSPC while writing (the estimate was low, or something else took the space) becomes
    the same non-retryable SpoolFull: a retry on a full disk only fails again. The writers
    (atomic_file) have removed their partial files by the time this sees the error."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(spool_root).free
        # from None: the workflow reports the root cause's type and message, and this one
        # says more than "[Errno 28]".
        raise SpoolFull(
            f"SPOOL_DIR {spool_root} ran out of space while writing the dump ({err.strerror}; "
            f"{free} bytes free now); the partial file was removed. Free space there or point "
            "SPOOL_DIR at a larger disk"
        ) from None
