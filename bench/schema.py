"""Realistic tenant schemas of a chosen relation size, generated server-side.

Five tables with indexes: accounts (text, numeric), events (jsonb), documents (long text, half
prose that compresses well, half hex that does not), metrics (numeric and float time series)
and attachments (bytea of hash output, close to incompressible). Rows come from
generate_series, so a given size always yields the same data. A pilot tenant measures the bytes
one "unit" (one account and its rows) takes; the target size then fixes the unit count.
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from devstack.seed import register_project

GENERATOR = 1  # bump when the data changes, so old bench schemas are rebuilt
PILOT_UNITS = 2_000
MB = 1_000_000

TABLES = """
CREATE TABLE {s}.accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL, name text NOT NULL, plan text NOT NULL,
    balance numeric(14, 2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE {s}.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL, kind text NOT NULL, payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL);
CREATE TABLE {s}.documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL, title text NOT NULL, body text NOT NULL);
CREATE TABLE {s}.metrics (
    account_id bigint NOT NULL, ts timestamptz NOT NULL,
    value numeric(12, 3) NOT NULL, ratio double precision NOT NULL);
CREATE TABLE {s}.attachments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL, name text NOT NULL, data bytea NOT NULL)
"""

# Per unit: 1 account, 12 events, 2 documents, 40 metrics rows, 0.25 attachments.
DATA = """
INSERT INTO {s}.accounts (email, name, plan, balance, created_at)
SELECT 'user' || g || '@tenant' || (g % 97) || '.example.com',
       initcap(substr(md5(g::text), 1, 8)) || ' ' || initcap(substr(md5((g * 7)::text), 1, 10)),
       (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + g % 4],
       round((hashtext(g::text) % 1000000)::numeric / 100, 2),
       timestamptz '2024-01-01' + g * interval '37 seconds'
FROM generate_series(1, {units}) g;
INSERT INTO {s}.events (account_id, kind, payload, occurred_at)
SELECT 1 + g % {units},
       (ARRAY['login', 'purchase', 'view', 'logout', 'error'])[1 + g % 5],
       jsonb_build_object(
           'ip', '10.' || (g % 256) || '.' || (g / 256 % 256) || '.' || (g % 7),
           'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)', 'curl/8.5.0',
                           'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2)'])[1 + g % 3],
           'amount', round((hashtext(g::text) % 10000)::numeric / 100, 2),
           'tags', jsonb_build_array('t' || (g % 13), 't' || (g % 29)),
           'session', md5(g::text)),
       timestamptz '2024-01-01' + g * interval '3 seconds'
FROM generate_series(1, {units} * 12) g;
INSERT INTO {s}.documents (account_id, title, body)
SELECT 1 + g % {units}, 'Document ' || g || ': ' || substr(md5(g::text), 1, 12),
       CASE WHEN g % 2 = 0
            THEN repeat('The quick brown fox jumps over the lazy dog near account '
                        || (g % 1000) || '. ', 12)
            ELSE (SELECT string_agg(md5((g * 31 + i)::text), ' ')
                  FROM generate_series(1, 14) i) END
FROM generate_series(1, {units} * 2) g;
INSERT INTO {s}.metrics (account_id, ts, value, ratio)
SELECT 1 + g % {units}, timestamptz '2024-01-01' + g * interval '1 second',
       round((hashtext((g * 3)::text) % 1000000)::numeric / 1000, 3),
       (hashtext((g * 5)::text) % 100000) / 100000.0
FROM generate_series(1, {units} * 40) g;
INSERT INTO {s}.attachments (account_id, name, data)
SELECT 1 + g % {units}, 'file-' || g || '.bin',
       (SELECT string_agg(sha256((g * 101 + i)::text::bytea), ''::bytea)
        FROM generate_series(1, 64) i)
FROM generate_series(1, greatest(1, {units} / 4)) g
"""

INDEXES = """
CREATE UNIQUE INDEX ON {s}.accounts (email);
CREATE INDEX ON {s}.events (account_id, occurred_at);
CREATE INDEX ON {s}.events USING gin (payload jsonb_path_ops);
CREATE INDEX ON {s}.documents (account_id);
CREATE INDEX ON {s}.metrics (account_id, ts);
CREATE INDEX ON {s}.attachments (account_id)
"""


def _run(conn: psycopg.Connection, script: str, schema: str, units: int) -> None:
    ident = sql.Identifier(schema).as_string(conn)
    for statement in script.format(s=ident, units=units).split(";\n"):
        if statement.strip():
            conn.execute(statement.encode())


def relation_bytes(conn: psycopg.Connection, schema: str) -> int:
    """Tables, their TOAST and indexes: what `\\dt+` and `\\di+` add up to."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
        (schema,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def create_tenant(conn: psycopg.Connection, schema: str, units: int) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    _run(conn, TABLES, schema, units)
    _run(conn, DATA, schema, units)
    _run(conn, INDEXES, schema, units)


def _marker(schema: str, target_mb: float) -> str:
    return f"bench generator {GENERATOR} target {target_mb:g} MB ({schema})"


def ensure_tenant(url: str, schema: str, target_mb: float) -> int:
    """The schema at about `target_mb` of relation size; reused when already there. Returns
    its relation size in bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
        if row and row[0] == _marker(schema, target_mb):
            return relation_bytes(conn, schema)
        pilot = f"{schema}_pilot"
        create_tenant(conn, pilot, PILOT_UNITS)
        per_unit = relation_bytes(conn, pilot) / PILOT_UNITS
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pilot)))
        create_tenant(conn, schema, max(1, round(target_mb * MB / per_unit)))
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(schema), sql.Literal(_marker(schema, target_mb))
            )
        )
        settle(url)  # the fresh rows frozen and analyzed, as a tenant's that lived a while
        return relation_bytes(conn, schema)


def settle(url: str) -> None:
    """Start the next measurement from a settled database and a quiet box, as a platform's
    long-lived database is: vacuumed, frozen and analyzed (freshly loaded rows get their hint
    bits and visibility map from their first readers, and tenants made just before leave dead
    catalog rows and no statistics, so pg_dump's catalog queries cost more or an autovacuum
    runs meanwhile; pages frozen already are skipped); PostgreSQL's dirty buffers written out
    (else a checkpoint spread over minutes writes them meanwhile); and the page cache's dirty
    pages (spool files, the object store's volumes) on disk, so the fsyncs of the next phase do
    not wait behind the writeback of the last one."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
    os.sync()


def register_bench_project(url: str, project_id: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        register_project(conn, project_id, schema, name=f"Bench {project_id}")
