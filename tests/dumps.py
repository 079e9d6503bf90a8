"""One way for tests to run the dump pipeline on a schema, with the defaults they share; and
pg_dump alone, for comparing what it writes."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from backup.models import Compression, DumpFormat, Project
from backup.pgconn import client_connection
from backup.pgdump import pg_bin_dir, pg_dump_args
from backup.pgtools import output
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


def random_blobs_table(url: str, schema: str, rows: int) -> None:
    """`schema` anew with one table of `rows` rows of 64 KiB of random bytes each
    (incompressible: the artifact's size is known, so are its S3 parts)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.blobs AS SELECT g AS id,"
            " (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')"
            "  FROM generate_series(1, 4096) i) AS body"  # 64 KiB per row
            f" FROM generate_series(1, {int(rows)}) g"
        )


def plain_dump(url: str, schema: str, snapshot: str, flags: list[str]) -> str:
    """pg_dump's plain-SQL dump of `schema` in `snapshot`, without its random \\restrict key."""
    bin_dir = pg_bin_dir()
    with client_connection(url) as client:
        args = pg_dump_args(
            bin_dir,
            conninfo=client.conninfo,
            schema=schema,
            fmt=DumpFormat.SQL,
            snapshot=snapshot,
            flags=flags,
        )
        text = output(bin_dir, "pg_dump", args[1:-1], client)
    return re.sub(r"^\\(un)?restrict .*$", "", text, flags=re.M)
