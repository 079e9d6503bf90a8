"""Row counts from the dump's own COPY data (backup/row_counts.py) against a real PostgreSQL 18:
the manifest's counts equal count(*) of every table, in every format, on a schema made to be hard
to count (tests/row_count_schema.py), on the realistic tenant and on the seeded ones; the custom
and plain formats need no count(*) but for partitioned tables (they hold no rows themselves);
rows written while the dump runs are in neither the dump nor its counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backup import pipeline
from backup.catalog import exact_row_counts, schema_tables
from backup.models import Compression, DumpFormat
from devstack.postgres import PostgresServer
from tests import row_count_schema
from tests.dumps import dump
from tests.realistic_schema import create_shared, create_tenant

DATABASE = "row_counts"
REALISTIC = "realistic"
USER = "0190d3b2-0000-7000-8000-0000000000bb"
PARTITIONED = {row_count_schema.SCHEMA: {"parted"}, REALISTIC: {"events"}}


@pytest.fixture(scope="module")
def url(postgres: PostgresServer) -> Iterator[str]:
    """A database with the hard-to-count schema and the realistic tenant; dropped afterwards."""
    postgres.drop_database(DATABASE)
    postgres.create_database(DATABASE)
    url = postgres.url(DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        row_count_schema.create(conn)
        create_shared(conn, USER)
        create_tenant(conn, REALISTIC, USER)
    yield url
    postgres.drop_database(DATABASE)


def exact(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return exact_row_counts(conn, schema, schema_tables(conn, schema))


@pytest.fixture
def counted_by_query(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables the pipeline counted with count(*), whatever the reason."""
    queried: list[str] = []

    def spy(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
        queried.extend(tables)
        return exact_row_counts(conn, schema, tables)

    monkeypatch.setattr(pipeline, "exact_row_counts", spy)
    return queried


@pytest.mark.parametrize("from_stream", [True, False], ids=["stream", "database"])
@pytest.mark.parametrize("fmt", list(DumpFormat))
@pytest.mark.parametrize("schema", [row_count_schema.SCHEMA, REALISTIC])
def test_counts_equal_count_star_in_every_format(
    url: str,
    tmp_path: Path,
    counted_by_query: list[str],
    fmt: DumpFormat,
    schema: str,
    from_stream: bool,
) -> None:
    reference = exact(url, schema)
    assert len(reference) > 10 and sum(reference.values()) > 1000

    outcome = dump(url, schema, tmp_path, fmt, Compression.ZSTD, rows_from_stream=from_stream)

    assert outcome.manifest.row_counts == reference
    assert list(outcome.manifest.row_counts) == outcome.manifest.tables
    if from_stream and fmt in (DumpFormat.CUSTOM, DumpFormat.SQL):
        # Read from the stream: only tables with no data of their own are left to count(*).
        assert set(counted_by_query) == PARTITIONED[schema]
    else:
        assert sorted(counted_by_query) == sorted(reference)


@pytest.mark.parametrize("fmt", [DumpFormat.CUSTOM, DumpFormat.SQL])
def test_seeded_tenants_are_counted_from_the_stream(
    postgres: PostgresServer, tmp_path: Path, counted_by_query: list[str], fmt: DumpFormat
) -> None:
    for schema in ("acme", "tenant_globex", "umbrella"):
        outcome = dump(
            postgres.url(), schema, tmp_path / schema, fmt, Compression.NONE, rows_from_stream=True
        )
        assert outcome.manifest.row_counts == exact(postgres.url(), schema)
    with psycopg.connect(postgres.url()) as conn:
        partitioned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('acme', 'tenant_globex', 'umbrella') AND c.relkind = 'p'"
        ).fetchone()
    assert partitioned is not None and len(counted_by_query) == partitioned[0]


@pytest.mark.parametrize("from_stream", [True, False], ids=["stream", "database"])
@pytest.mark.parametrize("fmt", list(DumpFormat))
def test_rows_written_during_the_dump_are_not_counted(
    url: str, tmp_path: Path, fmt: DumpFormat, from_stream: bool
) -> None:
    schema = row_count_schema.SCHEMA
    before = exact(url, schema)
    table = sql.Identifier(schema, "many")
    written: list[int] = []

    def write_while_dumping(_: int) -> None:
        if not written:  # once, while pg_dump runs: its snapshot was taken before
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("INSERT INTO {} SELECT g, 'late' FROM generate_series(1, 50) g").format(
                        table
                    )
                )
            written.append(50)

    try:
        outcome = dump(
            url,
            schema,
            tmp_path,
            fmt,
            Compression.ZSTD,
            on_progress=write_while_dumping,
            rows_from_stream=from_stream,
        )
        assert written
        assert outcome.manifest.row_counts == before
        assert exact(url, schema)["many"] == before["many"] + 50
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DELETE FROM {} WHERE v = 'late'").format(table))
