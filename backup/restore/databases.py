"""Databases and schemas a restore creates, finds and drops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from backup.catalog import exact_row_counts, schema_tables
from backup.errors import RestoreFailed


def with_database(database_url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return make_conninfo(database_url, dbname=database)


@contextlib.contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh database on the same server for the duration of the block (needs CREATEDB).
    A leftover of a crashed attempt under the same name is dropped first."""
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    query = "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = %s"
    row = conn.execute(query, (schema,)).fetchone()
    return bool(row and row[0])


def drop_schema(target_url: str, schema: str) -> None:
    """Remove a schema this tool created (a restore that was not swapped in)."""
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def row_counts(database_url: str, schema: str) -> dict[str, int]:
    """Exact row count of every table of the schema, as the manifest records them."""
    with psycopg.connect(database_url) as conn:
        return exact_row_counts(conn, schema, schema_tables(conn, schema))


def row_count_mismatches(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    problems = [f"{t}: missing after restore" for t in sorted(expected.keys() - restored.keys())]
    problems += [f"{t}: not in the manifest" for t in sorted(restored.keys() - expected.keys())]
    problems += [
        f"{t}: {expected[t]} rows in the manifest, {restored[t]} restored"
        for t in sorted(expected.keys() & restored.keys())
        if expected[t] != restored[t]
    ]
    return problems


def swap_schema(target_url: str, restored: str, original: str, keep_as: str) -> None:
    """In one transaction, move the live schema aside as `keep_as` and put `restored` in its
    place. Nothing is dropped, so objects elsewhere that depend on the old schema are untouched.
    Idempotent: a retry after a committed swap finds nothing left to do."""
    with psycopg.connect(target_url) as conn, conn.transaction():
        if not schema_exists(conn, restored):
            if schema_exists(conn, keep_as) and schema_exists(conn, original):
                return  # an earlier attempt committed the swap
            raise RestoreFailed(f"restored schema {restored!r} is missing; restore again")
        if schema_exists(conn, original):
            rename_schema(conn, original, keep_as)
        rename_schema(conn, restored, original)


def rename_schema(conn: psycopg.Connection, old: str, new: str) -> None:
    conn.execute(
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )
