"""Catalog facts about a tenant schema, read with parameterized queries."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

# Objects below this oid are PostgreSQL's own (FirstNormalObjectId); the counter never wraps
# below it, so every user object's oid is at least this.
FIRST_USER_OID = 16384

# What a restore recreates as TABLEs: ordinary and partitioned tables.
TABLE_KINDS = "c.relkind IN ('r', 'p')"

TABLES_SQL = f"""
SELECT c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND {TABLE_KINDS}
ORDER BY c.relname
"""


def schema_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """The schema's tables (TABLE_KINDS), by name."""
    return [row[0] for row in conn.execute(TABLES_SQL, (schema,)).fetchall()]


# Tables counted per query: one round trip for a tiny schema's tables (each count(*) still
# plans on its own, parallel scans included), a bounded query text for a large one.
COUNTS_PER_QUERY = 50


def exact_row_counts(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, int]:
    """Rows of each table itself (ONLY: a partitioned parent's rows live in its partitions)."""
    counts: dict[str, int] = {}
    for start in range(0, len(tables), COUNTS_PER_QUERY):
        batch = tables[start : start + COUNTS_PER_QUERY]
        query = sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                sql.SQL("(SELECT count(*) FROM ONLY {}.{})").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                for table in batch
            )
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        counts.update(zip(batch, (int(n) for n in row), strict=True))
    return counts


# Whether a comment in the snapshot is one pg_dump -n would write: on the schema, on an object
# in it (each records a dependency on its namespace), or on an object that depends on one of
# those, up to three steps away: a column's comment is its table's; an index, trigger, rule,
# policy, constraint, or a statistics object in another schema depends on its table; a primary
# key's index on the key. Wider than what pg_dump writes (an extension's member, a view
# elsewhere over the schema's table), never narrower; and index lookups per object of the
# schema, whatever the number of comments elsewhere in the database.
DEPENDENCY_STEPS = 3
SCHEMA_COMMENTS = f"""EXISTS (
    WITH RECURSIVE owned (classid, objid, steps) AS (
        SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass, n.oid, 0
        UNION
        SELECT d.classid, d.objid, owned.steps + 1
        FROM owned
        JOIN pg_catalog.pg_depend d ON d.refclassid = owned.classid AND d.refobjid = owned.objid
        WHERE owned.steps < {DEPENDENCY_STEPS}
    )
    SELECT FROM owned
    JOIN pg_catalog.pg_description c ON c.objoid = owned.objid AND c.classoid = owned.classid
)"""

# Everything the dump step asks before pg_dump starts, in one round trip of its snapshot
# transaction: the exported snapshot (the transaction's own, taken at this first query), the
# schema (NULL: no such schema), its tables and their on-disk bytes, and whether pg_dump's
# whole-database scans of security labels and comments can find anything to write: any label
# at all, any comment on the schema's objects (SCHEMA_COMMENTS). It also
# plans the catalog reads after it without parallel workers: in a database of many tenants
# pg_class grows past the size where the planner launches two, which costs more than the scan.
FACTS_SQL = f"""
SELECT pg_catalog.pg_export_snapshot(),
       n.oid,
       pg_catalog.current_setting('server_version'),
       coalesce(t.tables, '{{}}'),
       coalesce(t.bytes, 0),
       EXISTS (SELECT FROM pg_catalog.pg_seclabel) OR EXISTS (SELECT FROM pg_catalog.pg_shseclabel),
       {SCHEMA_COMMENTS},
       pg_catalog.set_config('max_parallel_workers_per_gather', '0', true)
FROM (SELECT) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(schema)s
LEFT JOIN LATERAL (
    SELECT array_agg(c.relname::text ORDER BY c.relname) AS tables,
           sum(pg_catalog.pg_table_size(c.oid)) AS bytes
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = n.oid AND {TABLE_KINDS}
) t ON true
"""


@dataclass(frozen=True)
class SnapshotFacts:
    snapshot: str
    namespace: int | None  # None: the schema does not exist in the snapshot
    server_version: str
    tables: list[str]  # as schema_tables lists them
    # On-disk size of their data (heap and TOAST, not indexes: pg_dump writes only their
    # definitions), a rough estimate of an uncompressed dump.
    data_bytes: int
    security_labels: bool  # any in the database (pg_dump -n reads them all)
    schema_comments: bool  # any on the schema's objects (pg_dump -n reads all comments)


def snapshot_facts(conn: psycopg.Connection, schema: str) -> SnapshotFacts:
    """Read as the first query of `conn`'s repeatable-read transaction, whose snapshot it
    exports: what follows in the transaction, and pg_dump, see the same database. Until
    `parallel_scans_again`, the transaction's queries run without parallel workers."""
    row = conn.execute(FACTS_SQL, {"schema": schema}).fetchone()
    assert row is not None
    snapshot, namespace, version, tables, data_bytes, labels, comments, _ = row
    return SnapshotFacts(
        snapshot=str(snapshot),
        namespace=None if namespace is None else int(namespace),
        server_version=str(version),
        tables=list(tables),
        data_bytes=int(data_bytes),
        security_labels=bool(labels),
        schema_comments=bool(comments),
    )


def parallel_scans_again(conn: psycopg.Connection) -> None:
    """Parallel workers for what follows snapshot_facts' catalog reads: count(*) of a large
    table scans in parallel (0.2 s instead of 0.4 s at 1 GB)."""
    conn.execute("SET LOCAL max_parallel_workers_per_gather TO DEFAULT")
