"""Restore an artifact: as it is, under a chosen schema name, or as a test restore into a
scratch database; the modules here each keep one step of it."""

from backup.restore.artifact import decompress, tar_compression, unpack
from backup.restore.check import check_by_restore
from backup.restore.databases import (
    drop_database,
    drop_schema,
    row_count_mismatches,
    row_counts,
    schema_exists,
    scratch_database,
    swap_schema,
    with_database,
)
from backup.restore.targets import Restored, restore, restore_as, staging_name

__all__ = [
    "Restored",
    "check_by_restore",
    "decompress",
    "drop_database",
    "drop_schema",
    "restore",
    "restore_as",
    "row_count_mismatches",
    "row_counts",
    "schema_exists",
    "scratch_database",
    "staging_name",
    "swap_schema",
    "tar_compression",
    "unpack",
    "with_database",
]
