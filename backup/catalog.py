"""Catalog facts about a tenant schema, read with parameterized queries."""

from __future__ import annotations

import psycopg

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


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])
