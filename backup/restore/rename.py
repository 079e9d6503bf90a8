"""A restored copy under a new name must not read or write the live schema. A rename follows
every reference PostgreSQL stores by oid (views, defaults, policies, BEGIN ATOMIC bodies); text
does not follow: a function's `SET search_path` is fixed, a SQL or PL/pgSQL body that qualifies
names with the original schema is rewritten, and any other mention is returned as a warning."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

SEARCH_PATHS = """
SELECT p.oid::regprocedure::text, substr(c, 13)
FROM pg_proc p CROSS JOIN LATERAL unnest(p.proconfig) AS c
WHERE p.pronamespace = to_regnamespace(%s) AND c LIKE 'search_path=%%'
"""

BODIES = """
SELECT p.oid, p.oid::regprocedure::text, p.prosrc FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = to_regnamespace(%s) AND p.prosqlbody IS NULL
  AND l.lanname IN ('sql', 'plpgsql') AND p.prokind IN ('f', 'p')
"""

# Expressions kept as text of their own: view bodies, defaults, policies, checks, triggers.
TEXTS = """
SELECT 'view ' || c.oid::regclass::text, pg_get_viewdef(c.oid)
FROM pg_class c WHERE c.relnamespace = to_regnamespace(%(s)s) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT format('default of %%s.%%I', d.adrelid::regclass, a.attname), pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = to_regnamespace(%(s)s)
UNION ALL
SELECT format('policy %%I on %%s', p.polname, p.polrelid::regclass),
       concat(pg_get_expr(p.polqual, p.polrelid), ' ', pg_get_expr(p.polwithcheck, p.polrelid))
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relnamespace = to_regnamespace(%(s)s)
UNION ALL
SELECT format('trigger %%I on %%s', t.tgname, t.tgrelid::regclass), pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = to_regnamespace(%(s)s) AND NOT t.tgisinternal
"""


def _mention(schema: str) -> re.Pattern[str]:
    """The schema's name as a word of its own (quoted or not)."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return re.compile(rf'(?<![\w$"])(?:{re.escape(quoted)}|{re.escape(schema)})(?![\w$"])')


def _qualifier(schema: str) -> re.Pattern[str]:
    """The name used as a qualifier: `schema.` or `"schema".`."""
    return re.compile(_mention(schema).pattern + r"(?=\s*\.)")


def fix_renamed(
    conn: psycopg.Connection, original: str, new: str, *, in_schema: str | None = None
) -> tuple[list[str], list[str]]:
    """In the renamed schema (`new`, or `in_schema` where it waits under a staging name), text
    naming `original` gets `new`; returns (what was fixed, warnings)."""
    where = in_schema or new
    row = conn.execute("SELECT quote_ident(%s)", (new,)).fetchone()  # quoted only if it must
    assert row is not None
    new_quoted = str(row[0])
    fixed: list[str] = []

    def shown(name: str) -> str:  # as it will be called once the copy has its name
        return name.replace(f"{where}.", f"{new_quoted}.")

    mention = _mention(original)
    for function, path in conn.execute(SEARCH_PATHS, (where,)).fetchall():
        if mention.search(path):
            fixed_path = mention.sub(new_quoted, path)
            conn.execute(
                sql.SQL("ALTER FUNCTION {} SET search_path = {}").format(
                    sql.SQL(function), sql.SQL(fixed_path)
                )
            )
            fixed.append(f"function {shown(function)}: search_path now {fixed_path}")
    warnings: list[str] = []
    for oid, function, body in conn.execute(BODIES, (where,)).fetchall():
        if not mention.search(body):
            continue
        if _qualifier(original).search(body):
            row = conn.execute("SELECT pg_get_functiondef(%s)", (oid,)).fetchone()
            assert row is not None
            definition = str(row[0])
            start = definition.index(body)  # rewrite the body only, never the header
            rewritten = _qualifier(original).sub(
                lambda m: (
                    f'"{new.replace(chr(34), chr(34) * 2)}"' if m[0][0] == '"' else new_quoted
                ),
                body,
            )  # quoted where the original was, so the copy reads as the original does
            conn.execute(definition[:start] + rewritten + definition[start + len(body) :])  # type: ignore[arg-type]
            fixed.append(f"function {shown(function)}: body names {new} instead of {original}")
            body = rewritten
        if mention.search(body):
            warnings.append(
                f"function {shown(function)}: its body still names schema {original!r} (not as a"
                " qualifier, so it was left as it is): check it does not reach the original"
            )
    for what, text in conn.execute(TEXTS, {"s": where}).fetchall():
        if text and mention.search(text):
            warnings.append(
                f"{shown(what)} names schema {original!r} in its text: check it does not reach it"
            )
    return fixed, warnings
