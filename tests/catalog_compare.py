"""A schema's catalog, object by object, and its rows as checksums, with the schema's own name
taken out: two schemas compare equal when one is a faithful restore of the other."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

OBJECTS = {
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid),
               col_description(c.oid, a.attnum)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = to_regnamespace(%(s)s) AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm')""",
    "relations": """
        SELECT relname, relkind, relrowsecurity, relispopulated,
               pg_get_expr(relpartbound, oid), obj_description(oid, 'pg_class')
        FROM pg_class WHERE relnamespace = to_regnamespace(%(s)s) AND relkind <> 'S'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated
        FROM pg_constraint WHERE connamespace = to_regnamespace(%(s)s)""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %(s)s""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_function_result(p.oid), p.prokind,
               p.proconfig, CASE WHEN p.prokind = 'a' THEN NULL ELSE pg_get_functiondef(p.oid) END
        FROM pg_proc p WHERE p.pronamespace = to_regnamespace(%(s)s)""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind IN ('v', 'm')""",
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON
        c.oid = t.tgrelid WHERE c.relnamespace = to_regnamespace(%(s)s) AND NOT t.tgisinternal""",
    "policies": """
        SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies
        WHERE schemaname = %(s)s""",
    "types": """
        SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod),
               (SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum
                WHERE enumtypid = t.oid),
               (SELECT array_agg(pg_get_constraintdef(oid)) FROM pg_constraint
                WHERE contypid = t.oid)
        FROM pg_type t WHERE t.typnamespace = to_regnamespace(%(s)s) AND t.typtype IN ('d', 'e')""",
}


def catalog(conn: psycopg.Connection, schema: str, also: str = "") -> dict[str, list[str]]:
    """Every object of the schema, described with the schema's name (and `also`, the name a
    copy was restored from) replaced by <S>."""
    names = "|".join(re.escape(n) for n in (schema, also) if n)
    mention = re.compile(rf"(?<![\w$])(?:{names})(?![\w$])")
    described = {}
    for kind, query in OBJECTS.items():
        rows = conn.execute(query, {"s": schema}).fetchall()  # type: ignore[call-overload]
        described[kind] = sorted(mention.sub("<S>", repr(row)) for row in rows)
    return described


def row_checksums(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    """md5 of every table's rows in order, a large object counted by its content (a copy in
    the same database gives them new oids)."""
    tables = conn.execute(
        "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = to_regnamespace(%s)"
        " AND c.relkind IN ('r', 'm') ORDER BY 2",
        (schema,),
    ).fetchall()
    sums = {}
    for oid, name in tables:
        columns = conn.execute(
            "SELECT attname, atttypid = 'oid'::regtype FROM pg_attribute WHERE attrelid = %s"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        parts = [
            sql.SQL("encode(sha256(lo_get({})), 'hex')").format(sql.Identifier(c))
            if is_oid
            else sql.SQL("{}::text").format(sql.Identifier(c))
            for c, is_oid in columns
        ]
        row = sql.SQL("concat_ws('|', {})").format(sql.SQL(", ").join(parts))
        query = sql.SQL(
            "SELECT count(*), md5(string_agg(r, E'\\n' ORDER BY r)) FROM (SELECT {} AS r FROM {}) t"
        ).format(row, sql.Identifier(schema, name))
        found = conn.execute(query).fetchone()
        sums[name] = repr(found)
    return sums


def snapshot(url: str, schema: str, also: str = "") -> tuple[dict[str, list[str]], dict[str, str]]:
    with psycopg.connect(url) as conn:
        return catalog(conn, schema, also), row_checksums(conn, schema)
