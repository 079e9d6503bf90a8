"""Large objects a tenant's oid/lo columns reference. pg_dump -n leaves them all out and -b would
take every tenant's, so exactly these are read in the dump's snapshot and appended to the
artifact's stream, after pg_dump's output, as a psql script any operator can run:

    SELECT pg_catalog.lo_create(16400);
    SELECT pg_catalog.lo_put(16400, 0, '\\x6869');

Restores run the same lines themselves, giving an object a new oid where its own is taken (a
copy beside the original, in the same database) and pointing the restored columns at it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from backup.compression import Compressor
from backup.dependency_models import LargeObjectColumn, LargeObjects
from backup.pgconn import read_only_transaction

CHUNK = 512 * 1024
HEADER = b"-- export-backup: large objects referenced by the schema\n" + (
    b"SET standard_conforming_strings = on;\n"
)
LINE = re.compile(rb"^SELECT pg_catalog\.lo_(create|put)\((\d+)(?:, (\d+), '\\x([0-9a-f]*)')?\);$")

# Columns of type oid, or a domain over it (the `lo` extension's type), in the schema's tables.
COLUMNS = """
WITH RECURSIVE oid_types(oid) AS (
    SELECT 'pg_catalog.oid'::regtype::oid
    UNION SELECT t.oid FROM pg_type t JOIN oid_types o ON t.typbasetype = o.oid
)
SELECT format('%%I.%%I', n.nspname, c.relname), a.attname
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND a.atttypid IN (SELECT oid FROM oid_types)
ORDER BY 1, 2
"""


def referencing_columns(conn: psycopg.Connection, schema: str) -> list[LargeObjectColumn]:
    return [LargeObjectColumn(table=t, column=c) for t, c in conn.execute(COLUMNS, (schema,))]


def references(
    conn: psycopg.Connection, schema: str, columns: list[LargeObjectColumn]
) -> dict[int, str]:
    """Every oid the columns (of their tables in `schema`) hold, with the first that holds it."""
    found: dict[int, str] = {}
    for col in columns:
        table, column = in_schema(conn, schema, col), sql.Identifier(col.column)
        query = sql.SQL("SELECT DISTINCT {c}::oid FROM {t} WHERE {c} IS NOT NULL").format(
            c=column, t=table
        )
        for (oid,) in conn.execute(query):
            found.setdefault(int(oid), f"{col.table}.{col.column}")
    return found


def _existing(conn: psycopg.Connection, oids: list[int]) -> set[int]:
    query = "SELECT oid FROM pg_catalog.pg_largeobject_metadata WHERE oid = ANY(%s)"
    return {int(row[0]) for row in conn.execute(query, (oids,))}


def describe(conn: psycopg.Connection, schema: str) -> tuple[LargeObjects, list[int]] | None:
    """The schema's large-object columns and the objects to export; None: no such column."""
    columns = referencing_columns(conn, schema)
    if not columns:
        return None
    refs = references(conn, schema, columns)
    existing = _existing(conn, list(refs))
    missing = [f"{where}: oid {oid}" for oid, where in sorted(refs.items()) if oid not in existing]
    meta = LargeObjects(columns=columns, count=0, total_bytes=0, digest="", missing=missing)
    return meta, sorted(existing)


def write(
    database_url: str, snapshot: str, oids: list[int], out: Callable[[bytes], object]
) -> tuple[int, str]:
    """Write the script of `oids`, read in the exported `snapshot`, to `out`; returns the
    bytes of content and the digest (sha256 over the sorted sha256 of each object)."""
    hashes = []
    total = 0
    with read_only_transaction(database_url) as conn:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        out(HEADER)
        for oid in oids:
            out(b"SELECT pg_catalog.lo_create(%d);\n" % oid)
            digest = hashlib.sha256()
            offset = 0
            while True:
                row = conn.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, CHUNK)).fetchone()
                chunk = bytes(row[0]) if row else b""
                if not chunk:
                    break
                digest.update(chunk)
                out(
                    b"SELECT pg_catalog.lo_put(%d, %d, '\\x%s');\n"
                    % (oid, offset, chunk.hex().encode())
                )
                offset += len(chunk)
            total += offset
            hashes.append(digest.hexdigest())
    return total, _combine(hashes)


def _combine(hashes: list[str]) -> str:
    return hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()


def _lines(script: Path) -> Iterator[tuple[bytes, int, int, bytes]]:
    with script.open("rb") as file:
        for raw in file:
            line = raw.rstrip(b"\n")
            match = LINE.match(line)
            if match:
                yield (
                    match[1],
                    int(match[2]),
                    int(match[3] or 0),
                    bytes.fromhex(match[4].decode() if match[4] else ""),
                )


def restore(conn: psycopg.Connection, script: Path, schema: str, meta: LargeObjects) -> int:
    """Create the script's objects in `conn`'s database (one transaction), each under its own
    oid where that is free, else a new one; the restored `schema`'s columns are repointed at the
    new oids with their triggers off (an `lo_manage` trigger would unlink the old object: the
    live one). Returns how many objects got a new oid."""
    moved: dict[int, int] = {}
    with conn.transaction():
        for op, oid, offset, data in _lines(script):
            if op == b"create":
                taken = _existing(conn, [oid])
                row = conn.execute("SELECT lo_create(%s)", (0 if taken else oid,)).fetchone()
                assert row is not None
                if taken:
                    moved[oid] = int(row[0])
            else:
                conn.execute("SELECT lo_put(%s, %s, %s)", (moved.get(oid, oid), offset, data))
        if moved:
            _repoint(conn, schema, meta.columns, moved)
    return len(moved)


def _repoint(
    conn: psycopg.Connection, schema: str, columns: list[LargeObjectColumn], moved: dict[int, int]
) -> None:
    conn.execute("CREATE TEMPORARY TABLE lo_moved (old oid PRIMARY KEY, new oid) ON COMMIT DROP")
    with conn.cursor().copy("COPY lo_moved FROM STDIN") as copy:
        for old, new in moved.items():
            copy.write_row((old, new))
    for col in columns:
        table = in_schema(conn, schema, col)
        column = sql.Identifier(col.column)
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        conn.execute(
            sql.SQL("UPDATE {t} SET {c} = m.new FROM lo_moved m WHERE {t}.{c} = m.old").format(
                t=table, c=column
            )
        )
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))


def in_schema(conn: psycopg.Connection, schema: str, col: LargeObjectColumn) -> sql.Identifier:
    """The column's table in `schema` (the manifest names it in the original schema)."""
    return sql.Identifier(schema, parsed(conn, col.table)[-1])


def parsed(conn: psycopg.Connection, qualified: str) -> list[str]:
    """The names of a quoted `schema.name` (as format('%I.%I') wrote it), parsed by the server."""
    row = conn.execute("SELECT parse_ident(%s)", (qualified,)).fetchone()
    assert row is not None
    return [str(name) for name in row[0]]


def problems(conn: psycopg.Connection, schema: str, meta: LargeObjects) -> list[str]:
    """What does not match after a restore into `schema`: a reference to no object, or content
    that differs from the backup's."""
    refs = references(conn, schema, meta.columns)
    existing = _existing(conn, list(refs))
    found = [
        f"{where}: oid {oid} refers to no large object"
        for oid, where in sorted(refs.items())
        if oid not in existing
    ]
    hashes = [
        str(row[0])
        for row in conn.execute(
            "SELECT encode(sha256(lo_get(oid)), 'hex') FROM pg_largeobject_metadata"
            " WHERE oid = ANY(%s)",
            (sorted(existing),),
        )
    ]
    if len(hashes) != meta.count or _combine(hashes) != meta.digest:
        found.append(
            f"large objects: {len(hashes)} restored, {meta.count} in the backup, and their"
            " content differs from the backup's"
            if len(hashes) != meta.count
            else "large objects: the restored content differs from the backup's"
        )
    return found


class Appender:
    """Called with the artifact's compressor once pg_dump's output is in: appends the script
    and keeps what the manifest records in `result` (None when the schema has no oid column)."""

    def __init__(
        self, database_url: str, snapshot: str, found: tuple[LargeObjects, list[int]] | None
    ) -> None:
        self._url = database_url
        self._snapshot = snapshot
        self._found = found
        self.result: LargeObjects | None = found[0] if found else None

    def __call__(self, compressor: Compressor) -> None:
        if self._found is None:
            return
        meta, oids = self._found
        offset = compressor.raw_bytes
        total, digest = write(self._url, self._snapshot, oids, compressor.write)
        self.result = meta.model_copy(
            update={"count": len(oids), "total_bytes": total, "digest": digest, "offset": offset}
        )
