"""Catalog facts about a tenant schema, read with parameterized queries."""

from __future__ import annotations

import psycopg
from psycopg import sql

TABLES_SQL = """
SELECT c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""


def schema_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """Ordinary and partitioned tables of the schema: what a restore recreates as TABLEs."""
    return [row[0] for row in conn.execute(TABLES_SQL, (schema,)).fetchall()]


DATA_BYTES_SQL = """
SELECT coalesce(sum(pg_catalog.pg_table_size(c.oid)), 0)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
"""


def schema_data_bytes(conn: psycopg.Connection, schema: str) -> int:
    """On-disk size of the schema's table data (heap and TOAST, not indexes: pg_dump writes
    only their definitions), a rough estimate of an uncompressed dump."""
    row = conn.execute(DATA_BYTES_SQL, (schema,)).fetchone()
    return int(row[0]) if row else 0


def exact_row_counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    """Rows of each table itself (ONLY: a partitioned parent's rows live in its partitions)."""
    counts = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])
