"""What a tenant schema needs from outside itself, read from pg_depend in the dump's snapshot:
extensions (name, version, schema), objects of other schemas (types, domains, functions,
operators, collations, text search configurations, sequences, tables foreign keys point at), the
foreign keys into those tables, and the structure-only SQL that recreates the objects in a
scratch database. pg_dump -n emits none of it, so a restore elsewhere needs this record."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import psycopg

from backup.catalog import FIRST_USER_OID
from backup.dependency_models import (
    Dependencies,
    ExtensionDependency,
    OutsideForeignKey,
    OutsideObject,
)
from backup.pgconn import client_connection
from backup.pgdump import exact_schema_pattern
from backup.pgtools import output

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


# The tenant's own objects, by catalog, and the sub-objects (defaults, triggers, policies,
# rules) that hang on its relations: whatever they reference outside is a dependency.
OWN_OBJECTS = """
SELECT 'pg_class'::regclass::oid, oid FROM pg_class WHERE relnamespace = %(ns)s
UNION ALL SELECT 'pg_type'::regclass::oid, oid FROM pg_type WHERE typnamespace = %(ns)s
UNION ALL SELECT 'pg_proc'::regclass::oid, oid FROM pg_proc WHERE pronamespace = %(ns)s
UNION ALL SELECT 'pg_constraint'::regclass::oid, oid FROM pg_constraint WHERE connamespace = %(ns)s
UNION ALL SELECT 'pg_operator'::regclass::oid, oid FROM pg_operator WHERE oprnamespace = %(ns)s
UNION ALL SELECT 'pg_collation'::regclass::oid, oid FROM pg_collation WHERE collnamespace = %(ns)s
UNION ALL SELECT 'pg_ts_config'::regclass::oid, oid FROM pg_ts_config WHERE cfgnamespace = %(ns)s
UNION ALL SELECT 'pg_statistic_ext'::regclass::oid, oid FROM pg_statistic_ext
    WHERE stxnamespace = %(ns)s
UNION ALL SELECT 'pg_attrdef'::regclass::oid, d.oid FROM pg_attrdef d
    JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'pg_trigger'::regclass::oid, t.oid FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'pg_policy'::regclass::oid, p.oid FROM pg_policy p
    JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'pg_rewrite'::regclass::oid, r.oid FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = %(ns)s
"""

# Outside objects a set of objects references (one hop). An index a foreign key uses stands
# for the constraint that owns it; a member of an extension stands for the extension.
REFERENCES = """
WITH refs AS (
    SELECT DISTINCT d.refclassid AS classid, d.refobjid AS objid
    FROM pg_depend d
    JOIN unnest(%(classids)s::oid[], %(objids)s::oid[]) AS o(classid, objid)
      ON d.classid = o.classid AND d.objid = o.objid
    WHERE d.deptype IN ('n', 'a') AND d.refobjid >= %(first)s
      AND d.refclassid <> 'pg_namespace'::regclass
), owners AS (
    SELECT CASE WHEN c.oid IS NULL THEN r.classid ELSE 'pg_constraint'::regclass::oid END
        AS classid, coalesce(c.oid, r.objid) AS objid
    FROM refs r
    LEFT JOIN pg_class i ON r.classid = 'pg_class'::regclass AND i.oid = r.objid
        AND i.relkind = 'i'
    LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.contype IN ('p', 'u')
)
SELECT o.classid, o.objid, x.oid AS extension, x.extname, x.extversion,
       xn.nspname AS extschema, id.type, id.schema, id.identity
FROM (SELECT DISTINCT classid, objid FROM owners) o
LEFT JOIN pg_depend e ON e.classid = o.classid AND e.objid = o.objid AND e.deptype = 'e'
LEFT JOIN pg_extension x ON x.oid = e.refobjid
LEFT JOIN pg_namespace xn ON xn.oid = x.extnamespace
CROSS JOIN LATERAL pg_identify_object(o.classid, o.objid, 0) AS id
"""

# What an outside table brings along to be created: its defaults and its own constraints
# (not its foreign keys: their targets are not the tenant's concern).
TABLE_PARTS = """
SELECT 'pg_attrdef'::regclass::oid, oid FROM pg_attrdef WHERE adrelid = ANY(%(tables)s)
UNION ALL SELECT 'pg_constraint'::regclass::oid, oid FROM pg_constraint
    WHERE conrelid = ANY(%(tables)s) AND contype IN ('c', 'p', 'u')
"""

OUTSIDE_FOREIGN_KEYS = """
SELECT c.conname, format('%%I.%%I', n.nspname, t.relname), format('%%I.%%I', fn.nspname, f.relname),
       pg_get_constraintdef(c.oid)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
WHERE c.contype = 'f' AND c.connamespace = %(ns)s AND f.relnamespace <> %(ns)s
  AND c.conparentid = 0
ORDER BY 2, 1
"""

Key = tuple[int, int]  # (classid, objid), as pg_dump's TOC names a catalog object


def capture(
    conn: psycopg.Connection,
    schema: str,
    database_url: str,
    snapshot: str,
    bin_dir: Path,
    namespace: int | None = None,
) -> Dependencies:
    """Read in `conn`'s transaction (the dump's snapshot, exported as `snapshot`); `namespace`
    is the schema's oid when the caller has read it already."""
    ns = namespace
    if ns is None:
        row = conn.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        assert row is not None
        ns = row[0]
    # Members of an extension installed in the schema itself are the extension's, not the
    # schema's (pg_dump -n leaves them out): what uses them depends on the extension.
    own_query = (
        "SELECT o.* FROM (" + OWN_OBJECTS + ") AS o(classid, objid) WHERE NOT EXISTS (SELECT"
        " FROM pg_depend e WHERE e.classid = o.classid AND e.objid = o.objid AND e.deptype = 'e')"
    )
    frontier: set[Key] = {(c, o) for c, o in conn.execute(own_query, {"ns": ns})}  # type: ignore[call-overload]
    own = set(frontier)
    parts: set[Key] = set()
    extensions: dict[str, ExtensionDependency] = {}
    objects: dict[Key, OutsideObject] = {}
    while frontier:  # outside objects need what they reference too (a table's column types)
        found: set[Key] = set()
        rows = conn.execute(
            REFERENCES,
            {
                "classids": [c for c, _ in frontier],
                "objids": [o for _, o in frontier],
                "first": FIRST_USER_OID,
            },
        ).fetchall()
        for classid, objid, ext, extname, extversion, extschema, kind, nsp, identity in rows:
            key = (int(classid), int(objid))
            if key in own or key in objects or key in parts:
                continue
            if ext is not None:
                extensions[extname] = ExtensionDependency(
                    name=extname, version=extversion, schema_name=extschema
                )
            elif kind == "extension":
                ext_row = conn.execute(
                    "SELECT extname, extversion, extnamespace::regnamespace::text"
                    " FROM pg_extension WHERE oid = %s",
                    (objid,),
                ).fetchone()
                assert ext_row is not None
                extensions[ext_row[0]] = ExtensionDependency(
                    name=ext_row[0], version=ext_row[1], schema_name=ext_row[2]
                )
            elif nsp not in (schema, *SYSTEM_SCHEMAS) and nsp is not None:
                objects[key] = OutsideObject(kind=kind, schema_name=nsp, identity=identity)
                found.add(key)
        tables = [o for (c, o) in found if objects[(c, o)].kind == "table"]
        if tables:
            new = {(int(c), int(o)) for c, o in conn.execute(TABLE_PARTS, {"tables": tables})}
            found |= new - parts
            parts |= new  # created with their table, never listed on their own
        frontier = found
    # Definitions with every name schema-qualified: an empty search_path for this one query.
    row = conn.execute("SELECT current_setting('search_path')").fetchone()
    previous_path = row[0] if row else ""
    conn.execute("SELECT set_config('search_path', '', true)")
    foreign_keys = [
        OutsideForeignKey(name=n, table=t, references=r, definition=d)
        for n, t, r, d in conn.execute(OUTSIDE_FOREIGN_KEYS, {"ns": ns})
    ]
    conn.execute("SELECT set_config('search_path', %s, true)", (previous_path,))
    schemas = sorted({o.schema_name for o in objects.values()})
    wanted = set(objects) | parts
    definitions = _definitions(database_url, snapshot, bin_dir, schemas, wanted) if objects else ""

    return Dependencies(
        extensions=sorted(extensions.values(), key=lambda e: e.name),
        objects=sorted(objects.values(), key=lambda o: (o.schema_name, o.kind, o.identity)),
        foreign_keys=foreign_keys,
        definitions=definitions,
    )


def structure_dump_args(schemas: list[str], archive: Path) -> list[str]:
    """pg_dump arguments for the structure alone (no rows, owners or grants) of exactly
    `schemas`, as a custom archive at `archive`: what pg_restore --list and --use-list cut."""
    return [
        "--schema-only",
        "--format=custom",
        "--no-owner",
        "--no-acl",
        "--strict-names",
        *[f"--schema={exact_schema_pattern(s)}" for s in schemas],
        f"--file={archive}",
    ]


TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) ")


def _definitions(
    database_url: str, snapshot: str, bin_dir: Path, schemas: list[str], wanted: set[Key]
) -> str:
    """pg_dump's own DDL of exactly the `wanted` objects, cut from a schema-only dump of their
    schemas (in the same snapshot) by the catalog ids in its table of contents."""
    with (
        tempfile.TemporaryDirectory(prefix="dependencies-") as work,
        client_connection(database_url) as client,
    ):
        archive = Path(work) / "outside.dump"
        args = [*structure_dump_args(schemas, archive), f"--snapshot={snapshot}"]
        output(bin_dir, "pg_dump", args, client)
        toc = output(bin_dir, "pg_restore", ["--list", str(archive)])
        keep = []
        for line in toc.splitlines():
            match = TOC_LINE.match(line)
            if match and (int(match[2]), int(match[3])) in wanted:
                keep.append(line)
        listing = Path(work) / "list"
        listing.write_text("\n".join(keep) + "\n")
        return output(
            bin_dir,
            "pg_restore",
            ["--no-owner", "--no-acl", f"--use-list={listing}", "--file=-", str(archive)],
        )
