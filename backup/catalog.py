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


def _is(catalog: str) -> str:
    return f"d.classoid = 'pg_catalog.{catalog}'::pg_catalog.regclass"


def _own_namespace(catalog: str, column: str) -> str:
    return (
        f"WHEN {_is(catalog)} THEN "
        f"(SELECT ARRAY[x.{column}] FROM pg_catalog.{catalog} x WHERE x.oid = d.objoid)"
    )


def _relation_namespace(catalog: str, column: str) -> str:
    return (
        f"WHEN {_is(catalog)} THEN (SELECT ARRAY[r.relnamespace] FROM pg_catalog.{catalog} x "
        f"JOIN pg_catalog.pg_class r ON r.oid = x.{column} WHERE x.oid = d.objoid)"
    )


NEVER_DUMPED_WITH_SCHEMA = (
    "pg_extension",
    "pg_cast",
    "pg_language",
    "pg_foreign_data_wrapper",
    "pg_foreign_server",
    "pg_event_trigger",
    "pg_publication",
    "pg_am",
    "pg_transform",
    "pg_largeobject",
    "pg_largeobject_metadata",
)
OWN_NAMESPACE = (
    ("pg_class", "relnamespace"),
    ("pg_type", "typnamespace"),
    ("pg_proc", "pronamespace"),
    ("pg_operator", "oprnamespace"),
    ("pg_opclass", "opcnamespace"),
    ("pg_opfamily", "opfnamespace"),
    ("pg_collation", "collnamespace"),
    ("pg_conversion", "connamespace"),
    ("pg_ts_config", "cfgnamespace"),
    ("pg_ts_dict", "dictnamespace"),
    ("pg_ts_parser", "prsnamespace"),
    ("pg_ts_template", "tmplnamespace"),
)
ON_RELATION = (("pg_trigger", "tgrelid"), ("pg_rewrite", "ev_class"), ("pg_policy", "polrelid"))
_WHENS = "\n    ".join(
    [
        *(_own_namespace(catalog, column) for catalog, column in OWN_NAMESPACE),
        *(_relation_namespace(catalog, column) for catalog, column in ON_RELATION),
        *(f"WHEN {_is(catalog)} THEN '{{}}'::oid[]" for catalog in NEVER_DUMPED_WITH_SCHEMA),
    ]
)

# The namespaces a commented object belongs to, for pg_dump -n: its own and, where pg_dump
# follows a relation into the schema, that relation's (a statistics object on one). An empty
# array: a kind pg_dump -n never writes (it dumps those only when it dumps everything). NULL:
# a kind not listed here, or an object not found; it counts as the schema's, so an unknown
# case keeps the scan.
COMMENT_NAMESPACES = f"""CASE
    WHEN {_is("pg_namespace")} THEN ARRAY[d.objoid]
    WHEN {_is("pg_constraint")} THEN (
        SELECT ARRAY[x.connamespace, coalesce(r.relnamespace, x.connamespace)]
        FROM pg_catalog.pg_constraint x LEFT JOIN pg_catalog.pg_class r ON r.oid = x.conrelid
        WHERE x.oid = d.objoid)
    WHEN {_is("pg_statistic_ext")} THEN (
        SELECT ARRAY[x.stxnamespace, r.relnamespace]
        FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_class r ON r.oid = x.stxrelid
        WHERE x.oid = d.objoid)
    {_WHENS}
END"""

# Everything the dump step asks before pg_dump starts, in one round trip of its snapshot
# transaction: the exported snapshot (the transaction's own, taken at this first query), the
# schema (NULL: no such schema), its tables and their on-disk bytes, and whether pg_dump's
# whole-database scans of security labels and comments can find anything to write: any label
# at all, any comment on a user object of the schema (COMMENT_NAMESPACES). It also
# plans the catalog reads after it without parallel workers: in a database of many tenants
# pg_class grows past the size where the planner launches two, which costs more than the scan.
FACTS_SQL = f"""
SELECT pg_catalog.pg_export_snapshot(),
       n.oid,
       pg_catalog.current_setting('server_version'),
       coalesce(t.tables, '{{}}'),
       coalesce(t.bytes, 0),
       EXISTS (SELECT FROM pg_catalog.pg_seclabel) OR EXISTS (SELECT FROM pg_catalog.pg_shseclabel),
       EXISTS (
           SELECT FROM pg_catalog.pg_description d
           WHERE d.objoid >= %(first)s AND coalesce(n.oid = ANY ({COMMENT_NAMESPACES}), true)
       ),
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
    schema_comments: bool  # any on a user object pg_dump -n could write (ditto)


def snapshot_facts(conn: psycopg.Connection, schema: str) -> SnapshotFacts:
    """Read as the first query of `conn`'s repeatable-read transaction, whose snapshot it
    exports: what follows in the transaction, and pg_dump, see the same database. Until
    `parallel_scans_again`, the transaction's queries run without parallel workers."""
    row = conn.execute(FACTS_SQL, {"schema": schema, "first": FIRST_USER_OID}).fetchone()
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
