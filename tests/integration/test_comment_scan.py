"""pg_dump -n reads every comment of the database to keep those of what it dumps (~16 ms of
server CPU per tiny dump on the bench). The dump step skips that scan (--no-comments) only when
no comment in the snapshot is one pg_dump -n would write: the same dump either way, whatever
the other schemas, extensions, casts and servers of the database carry."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from backup.catalog import SCHEMA_COMMENTS, snapshot_facts
from backup.pgconn import read_only_transaction
from backup.pgdump import skipped_scans
from tests.dumps import plain_dump
from tests.realistic_schema import create_shared, create_tenant

TENANT = "comment_tenant"
USER = "6f1c2b8e-4d7a-4f3e-9b1a-2c5d8e7f0a13"

# One of each kind of object, in the tenant's schema and in another one: `{s}` is the schema.
OBJECTS = """
CREATE SCHEMA {s};
CREATE TYPE {s}.mood AS ENUM ('ok', 'meh');
CREATE TYPE {s}.pair AS (a int, b text);
CREATE DOMAIN {s}.positive AS integer CONSTRAINT is_positive CHECK (VALUE > 0);
CREATE TABLE {s}.items (
    id serial PRIMARY KEY,
    qty {s}.positive,
    label text CONSTRAINT label_short CHECK (length(label) < 100),
    mood {s}.mood
);
CREATE INDEX items_label ON {s}.items (label);
CREATE TABLE {s}.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE {s}.events_2026 PARTITION OF {s}.events
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE MATERIALIZED VIEW {s}.counts AS SELECT count(*) AS n FROM {s}.items;
CREATE SEQUENCE {s}.loose;
CREATE VIEW {s}.labels AS SELECT label FROM {s}.items;
CREATE FUNCTION {s}.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER items_touch BEFORE INSERT ON {s}.items FOR EACH ROW EXECUTE FUNCTION {s}.touch();
CREATE RULE items_quiet AS ON DELETE TO {s}.items WHERE false DO INSTEAD NOTHING;
CREATE POLICY items_all ON {s}.items USING (true);
CREATE STATISTICS {s}.items_stats ON qty, label FROM {s}.items;
CREATE TEXT SEARCH CONFIGURATION {s}.plain (COPY = pg_catalog.simple);
CREATE COLLATION {s}.binary (locale = 'C');
CREATE OPERATOR {s}.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq);
INSERT INTO {s}.items (qty, label, mood) VALUES (1, 'one', 'ok'), (2, 'two', 'meh');
"""

# COMMENT ON targets, `{s}` the schema: each is written by pg_dump -n when `{s}` is the tenant.
COMMENTED = {
    "schema": "SCHEMA {s}",
    "table": "TABLE {s}.items",
    "column": "COLUMN {s}.items.label",
    "index": "INDEX {s}.items_label",
    "primary key index": "INDEX {s}.items_pkey",
    "primary key": "CONSTRAINT items_pkey ON {s}.items",
    "partition key index": "INDEX {s}.events_2026_pkey",
    "materialized view column": "COLUMN {s}.counts.n",
    "table constraint": "CONSTRAINT label_short ON {s}.items",
    "domain": "DOMAIN {s}.positive",
    "domain constraint": "CONSTRAINT is_positive ON DOMAIN {s}.positive",
    "type": "TYPE {s}.mood",
    "composite type": "TYPE {s}.pair",
    "composite type attribute": "COLUMN {s}.pair.b",
    "owned sequence": "SEQUENCE {s}.items_id_seq",
    "sequence": "SEQUENCE {s}.loose",
    "view": "VIEW {s}.labels",
    "function": "FUNCTION {s}.touch()",
    "trigger": "TRIGGER items_touch ON {s}.items",
    "rule": "RULE items_quiet ON {s}.items",
    "policy": "POLICY items_all ON {s}.items",
    "statistics": "STATISTICS {s}.items_stats",
    "text search configuration": "TEXT SEARCH CONFIGURATION {s}.plain",
    "collation": "COLLATION {s}.binary",
    "operator": "OPERATOR {s}.=== (int, int)",
}

# Commented objects pg_dump -n of any schema never writes.
DATABASE_WIDE = """
CREATE EXTENSION citext SCHEMA elsewhere;
COMMENT ON EXTENSION citext IS 'outside: an extension';
CREATE CAST (elsewhere.mood AS elsewhere.positive) WITH INOUT;
COMMENT ON CAST (elsewhere.mood AS elsewhere.positive) IS 'outside: a cast';
CREATE FOREIGN DATA WRAPPER nowhere_fdw;
COMMENT ON FOREIGN DATA WRAPPER nowhere_fdw IS 'outside: a wrapper';
CREATE SERVER nowhere FOREIGN DATA WRAPPER nowhere_fdw;
COMMENT ON SERVER nowhere IS 'outside: a server';
CREATE PUBLICATION everything_pub;
COMMENT ON PUBLICATION everything_pub IS 'outside: a publication';
SELECT pg_catalog.lo_create(424242);
COMMENT ON LARGE OBJECT 424242 IS 'outside: a large object';
"""


pytestmark = pytest.mark.usefixtures("empty_snapshot_pool")


@pytest.fixture
def database(scratch_db: str) -> str:
    """The tenant and another schema with one of each object, none commented yet, and
    commented database-wide objects."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        for schema in (TENANT, "elsewhere"):
            conn.execute(OBJECTS.format(s=schema))
        conn.execute(DATABASE_WIDE)
    return scratch_db


def comment(url: str, target: str, text: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON {} IS {}").format(sql.SQL(target), sql.Literal(text)))


def dumps_with_and_without_the_scan(url: str) -> tuple[bool, str, str]:
    """Whether the facts see a comment of the tenant; its dump with the flags the dump step
    would pass, and with the comment scan."""
    with read_only_transaction(url) as conn:
        facts = snapshot_facts(conn, TENANT)
        flags = skipped_scans(facts)
        assert ("--no-comments" in flags) is not facts.schema_comments
        chosen = plain_dump(url, TENANT, facts.snapshot, flags)
        full = plain_dump(url, TENANT, facts.snapshot, ["--no-security-labels"])
    return facts.schema_comments, chosen, full


def test_comments_on_everything_but_the_tenant_skip_the_scan(database: str) -> None:
    for what, target in COMMENTED.items():
        comment(database, target.format(s="elsewhere"), f"outside: {what}")
    found, chosen, full = dumps_with_and_without_the_scan(database)
    assert not found
    assert "CREATE TABLE comment_tenant.items" in full
    assert "outside" not in full
    assert chosen == full


@pytest.mark.parametrize("what", list(COMMENTED))
def test_a_comment_on_the_tenant_keeps_the_scan(database: str, what: str) -> None:
    for other, target in COMMENTED.items():  # the rest of the database as busy as above
        comment(database, target.format(s="elsewhere"), f"outside: {other}")
    comment(database, COMMENTED[what].format(s=TENANT), f"kept: {what}")
    found, chosen, full = dumps_with_and_without_the_scan(database)
    assert f"kept: {what}" in full
    assert found
    assert chosen == full


def test_statistics_elsewhere_on_a_tenant_table_keep_the_scan(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE STATISTICS elsewhere.tenant_stats ON qty, mood FROM {TENANT}.items")
    comment(database, "STATISTICS elsewhere.tenant_stats", "on a table of the tenant")
    found, chosen, full = dumps_with_and_without_the_scan(database)
    assert found
    assert chosen == full


@pytest.mark.parametrize("extension", ["vector", "hstore"])
def test_an_extension_in_the_schema_writes_the_same_dump(database: str, extension: str) -> None:
    """Real tenant schemas hold extensions (pgvector); pg_dump -n writes none of their members,
    and comments on them may keep the scan, never change the dump."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION {extension} SCHEMA {TENANT}")
    comment(database, f"EXTENSION {extension}", "outside: the extension")
    _, chosen, full = dumps_with_and_without_the_scan(database)
    assert chosen == full


# Every object of a schema found by its catalog's namespace column (or its table's), a column
# by its table: found apart from the dependency walk, to check that walk against.
OBJECTS_BY_CATALOG = """
SELECT 'pg_namespace'::regclass::oid, %(ns)s::oid, 0
UNION ALL SELECT 'pg_class'::regclass::oid, oid, 0 FROM pg_class WHERE relnamespace = %(ns)s
UNION ALL SELECT 'pg_class'::regclass::oid, a.attrelid, a.attnum FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = %(ns)s AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'pg_type'::regclass::oid, oid, 0 FROM pg_type WHERE typnamespace = %(ns)s
UNION ALL SELECT 'pg_proc'::regclass::oid, oid, 0 FROM pg_proc WHERE pronamespace = %(ns)s
UNION ALL SELECT 'pg_constraint'::regclass::oid, oid, 0 FROM pg_constraint
    WHERE connamespace = %(ns)s
UNION ALL SELECT 'pg_statistic_ext'::regclass::oid, oid, 0 FROM pg_statistic_ext
    WHERE stxnamespace = %(ns)s
UNION ALL SELECT 'pg_operator'::regclass::oid, oid, 0 FROM pg_operator WHERE oprnamespace = %(ns)s
UNION ALL SELECT 'pg_opclass'::regclass::oid, oid, 0 FROM pg_opclass WHERE opcnamespace = %(ns)s
UNION ALL SELECT 'pg_opfamily'::regclass::oid, oid, 0 FROM pg_opfamily WHERE opfnamespace = %(ns)s
UNION ALL SELECT 'pg_collation'::regclass::oid, oid, 0 FROM pg_collation
    WHERE collnamespace = %(ns)s
UNION ALL SELECT 'pg_ts_config'::regclass::oid, oid, 0 FROM pg_ts_config WHERE cfgnamespace = %(ns)s
UNION ALL SELECT 'pg_trigger'::regclass::oid, t.oid, 0 FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'pg_rewrite'::regclass::oid, r.oid, 0 FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'pg_policy'::regclass::oid, p.oid, 0 FROM pg_policy p
    JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = %(ns)s
"""


def unseen_comments(url: str, schema: str) -> list[str]:
    """The schema's objects (OBJECTS_BY_CATALOG) whose comment, were it the only one, the
    dependency walk would not see: each is commented in a transaction that is rolled back."""
    unseen = []
    with psycopg.connect(url) as conn:
        ns = conn.execute("SELECT %s::regnamespace::oid", (schema,)).fetchone()
        assert ns is not None
        objects = conn.execute(OBJECTS_BY_CATALOG, {"ns": ns[0]}).fetchall()
        assert len(objects) > 20
        check = sql.SQL("SELECT {} FROM pg_namespace n WHERE n.oid = %s").format(
            sql.SQL(SCHEMA_COMMENTS)
        )
        for classid, objid, subid in objects:
            conn.execute(  # the schema's own comments out of the way, in this transaction
                f"DELETE FROM pg_description d USING ({OBJECTS_BY_CATALOG}) o (c, i, s) "
                "WHERE d.classoid = o.c AND d.objoid = o.i",
                {"ns": ns[0]},
            )
            row = conn.execute(check, (ns[0],)).fetchone()
            assert row == (False,), "a comment the catalogs' namespace columns do not find"
            conn.execute(
                "INSERT INTO pg_description VALUES (%s, %s, %s, 'probe')", (objid, classid, subid)
            )
            row = conn.execute(check, (ns[0],)).fetchone()
            if not (row and row[0]):
                name = conn.execute(
                    "SELECT pg_describe_object(%s, %s, %s)", (classid, objid, subid)
                ).fetchone()
                unseen.append(str(name[0] if name else (classid, objid, subid)))
            conn.rollback()
    return unseen


def test_every_object_of_the_schema_is_seen_by_the_walk(database: str) -> None:
    assert unseen_comments(database, TENANT) == []


def test_every_object_of_a_realistic_tenant_is_seen_by_the_walk(scratch_db: str) -> None:
    """Partitions, their keys' indexes, TOAST tables, array types, aggregates, policies, a
    materialized view: tests/realistic_schema.py."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        create_shared(conn, USER)
        create_tenant(conn, "realistic", USER)
    assert unseen_comments(scratch_db, "realistic") == []
