"""A schema whose COPY data is hard to count: what the row counter (backup/row_counts.py) must get
exactly right. Used by tests/integration/test_row_counts.py, and to capture the pg_dump output
in tests/unit/data/ that tests/unit/test_row_counts.py replays without a server:

    .venv/bin/python -m tests.row_count_schema URL   # rewrites tests/unit/data/rows.*

(URL of a scratch database: the schema is dropped and created there.)
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from backup.catalog import exact_row_counts, schema_tables
from backup.pgconn import client_connection
from backup.pgdump import exact_schema_pattern, pg_bin_dir

SCHEMA = "Row Counts"  # needs quoting: a space and upper case
DATA = Path(__file__).parent / "unit" / "data"

# {s} is the schema as an identifier. Row lengths are chosen to put 0x0A into chunk length
# prefixes (10, 266, 2560 to 2815 bytes per row), to span many chunks and reads, and to exceed the
# counter's 16 KiB bulk window; values hold newlines, tabs, backslashes, `\.` and NULLs. The
# function, comment and view hold lines that look like COPY data in the plain format.
TABLES = """
CREATE TABLE {s}.empty (id int);
CREATE TABLE {s}.no_columns ();
INSERT INTO {s}.no_columns SELECT FROM generate_series(1, 7);
CREATE TABLE {s}.tricky (id int, body text, data bytea, note text);
INSERT INTO {s}.tricky VALUES
    (1, E'line one\\nline two\\r\\n', '\\x000a0d5c2e'::bytea, NULL),
    (2, E'tab\\there\\\\back\\\\slash', NULL, E'\\\\.'),
    (3, E'\\\\.', E'\\\\x0a'::bytea, E'\\n\\\\.\\n'),
    (4, 'unicode: é ß 漢字 😀', '', ''),
    (5, NULL, NULL, NULL),
    (6, E'COPY x FROM stdin;\\n\\\\.\\n', NULL, 'ends with a backslash \\');
CREATE TABLE {s}.fives (v char(4));
INSERT INTO {s}.fives SELECT lpad(g::text, 4, '0') FROM generate_series(1, 300) g;
CREATE TABLE {s}.sized (n int, pad text);
INSERT INTO {s}.sized SELECT g, repeat('x', len - length(g::text) - 2)
    FROM generate_series(1, 60) g, unnest(ARRAY[10, 266, 522, 2560, 2570, 2815]) len;
CREATE TABLE {s}.many (id int, v text);
INSERT INTO {s}.many SELECT g, substr(md5(g::text), 1, 6) FROM generate_series(1, 20000) g;
CREATE TABLE {s}.wide (id int, blob bytea);
INSERT INTO {s}.wide SELECT g, decode(repeat(md5(g::text), 1500), 'hex')
    FROM generate_series(1, 3) g;
CREATE TABLE {s}.generated (a int, b int GENERATED ALWAYS AS (a * 2) STORED,
                            c int GENERATED ALWAYS AS (a * 3) VIRTUAL);
INSERT INTO {s}.generated (a) SELECT g FROM generate_series(1, 11) g;
CREATE TABLE {s}."Quoted ""Name"".x" (id int);
INSERT INTO {s}."Quoted ""Name"".x" SELECT generate_series(1, 13);
CREATE TABLE {s}.parted (day date, v int) PARTITION BY RANGE (day);
CREATE TABLE {s}.parted_2024 PARTITION OF {s}.parted
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE {s}.parted_2025 PARTITION OF {s}.parted
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO {s}.parted SELECT date '2024-06-01' + g, g FROM generate_series(1, 400) g;
CREATE TABLE {s}.parent (id int);
CREATE TABLE {s}.child () INHERITS ({s}.parent);
INSERT INTO {s}.parent SELECT generate_series(1, 5);
INSERT INTO {s}.child SELECT generate_series(1, 9);
CREATE UNLOGGED TABLE {s}.unlogged (id int);
INSERT INTO {s}.unlogged SELECT generate_series(1, 17);
CREATE FUNCTION {s}.decoy() RETURNS text LANGUAGE sql AS $body$ SELECT $$
COPY {s}.many (id, v) FROM stdin;
1	fake
\\.
$$ $body$;
COMMENT ON TABLE {s}.empty IS E'
COPY "Row Counts".empty (id) FROM stdin;\\n1\\n2\\n\\\\.\\n';
CREATE VIEW {s}.decoy_view AS SELECT 'it''s
COPY "Row Counts".fives (v) FROM stdin;
' AS text, E'a\\'b' AS escaped;
"""
MANY_TABLES = 120  # beside the others: small tables in one read


def create(conn: psycopg.Connection) -> None:
    s = sql.Identifier(SCHEMA).as_string(conn)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(TABLES.format(s=s).encode())
    for index in range(MANY_TABLES):
        table = sql.Identifier(SCHEMA, f"t{index:03d}")
        conn.execute(sql.SQL("CREATE TABLE {} (id int, v text)").format(table))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, repeat('v', g) FROM generate_series(1, %s) g").format(
                table
            ),
            (index % 7,),
        )


def capture(url: str) -> None:
    """Create the schema at `url`; write pg_dump's custom (-Z0) and plain output, gzipped, and
    count(*) of every table to DATA."""
    with psycopg.connect(url, autocommit=True) as conn:
        create(conn)
        counts = exact_counts(conn)
    DATA.mkdir(exist_ok=True)
    for fmt, suffix, extra in (("custom", "dump", ["--compress=0"]), ("plain", "sql", [])):
        with client_connection(url) as client:
            out = subprocess.run(
                [
                    str(pg_bin_dir() / "pg_dump"),
                    f"--format={fmt}",
                    *extra,
                    "--no-owner",
                    "--no-acl",
                    f"--schema={exact_schema_pattern(SCHEMA)}",
                    f"--dbname={client.conninfo}",
                ],
                check=True,
                capture_output=True,
                env={**os.environ, **client.env},
                pass_fds=client.pass_fds,
            ).stdout
        (DATA / f"rows.{suffix}.gz").write_bytes(gzip.compress(out, mtime=0))
    (DATA / "rows.json").write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")


def exact_counts(conn: psycopg.Connection) -> dict[str, int]:
    """count(*) of every table of the schema, the reference the counter must match."""
    return exact_row_counts(conn, SCHEMA, schema_tables(conn, SCHEMA))


if __name__ == "__main__":
    capture(sys.argv[1])
