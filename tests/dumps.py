"""One way for tests to run the dump pipeline on a schema, with the defaults they share."""

from __future__ import annotations

from pathlib import Path

from backup.models import Compression, DumpFormat, Project
from backup.pgdump import pg_bin_dir
from backup.pipeline import DumpOutcome, PipelineOptions, ProgressCallback, dump_schema


def dump(
    url: str,
    schema: str,
    out: Path,
    fmt: DumpFormat = DumpFormat.CUSTOM,
    compression: Compression = Compression.ZSTD,
    *,
    max_bytes: int = 10**10,
    recipients: list[str] | None = None,
    on_progress: ProgressCallback = lambda _: None,
    rows_from_stream: bool = False,
) -> DumpOutcome:
    return dump_schema(
        database_url=url,
        project=Project(project_id=schema, name=schema, schema_name=schema),
        fmt=fmt,
        compression=compression,
        out_dir=out,
        base_name="b",
        options=PipelineOptions(
            bin_dir=pg_bin_dir(), max_bytes=max_bytes, rows_from_stream=rows_from_stream
        ),
        recipients=recipients,
        on_progress=on_progress,
    )
