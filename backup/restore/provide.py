"""Give a database what a backup needs from outside its schema: in a scratch database the
extensions and the structure-only definitions recorded at dump time (never a row); in a restore
target a check, before anything is created, that fails naming what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from backup.dependency_models import Dependencies, ExtensionDependency, OutsideObject
from backup.errors import MissingDependency
from backup.pgconn import client_connection
from backup.pgtools import StopCheck, never_stop, start, wait

PSQL = ["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]


def provide(
    database_url: str, deps: Dependencies, bin_dir: Path, should_stop: StopCheck = never_stop
) -> list[str]:
    """Into a scratch database; returns notes (an extension version the server lacks)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in deps.schemas:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        notes = [n for e in deps.extensions if (n := create_extension(conn, e))]
    if deps.definitions:
        run_sql(database_url, deps.definitions.encode(), bin_dir, should_stop)
    return notes


def run_sql(database_url: str, script: bytes, bin_dir: Path, should_stop: StopCheck) -> None:
    """psql, not the driver: pg_dump's output holds psql meta-commands (\\restrict)."""
    with client_connection(database_url) as client:
        proc = start(bin_dir, "psql", [*PSQL, "--file=-"], client, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(script)
        wait(proc, should_stop)


def create_extension(conn: psycopg.Connection, ext: ExtensionDependency) -> str | None:
    """As it was (same schema and version) where the server has that version, else the
    server's default version, with a note saying so."""
    available = conn.execute(
        "SELECT 1 FROM pg_available_extension_versions WHERE name = %s AND version = %s",
        (ext.name, ext.version),
    ).fetchone()
    create = sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}").format(
        sql.Identifier(ext.name), sql.Identifier(ext.schema_name)
    )
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ext.schema_name)))
    if available:
        conn.execute(create + sql.SQL(" VERSION {} CASCADE").format(sql.Literal(ext.version)))
        return None
    conn.execute(create + sql.SQL(" CASCADE"))
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = %s", (ext.name,)
    ).fetchone()
    return (
        f"extension {ext.name}: version {ext.version} of the backup is not available on this"
        f" server, created version {row[0] if row else '?'} instead"
    )


def ensure(
    database_url: str, deps: Dependencies, create_extensions: bool, schema: str
) -> list[str]:
    """Check a restore target has every dependency outside `schema` (the backup's); raises
    MissingDependency naming each missing one and what to run. With `create_extensions`,
    missing extensions are created instead (returns notes). Objects of other schemas are never
    created in a target."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        outside = [e for e in deps.extensions if e.schema_name != schema]
        absent = [e for e in outside if not _has_extension(conn, e)]
        missing_objects = [o for o in deps.objects if not _exists(conn, o)]
        notes: list[str] = []
        if absent and create_extensions and not missing_objects:
            notes = [
                create_extension(conn, e) or f"extension {e.name} {e.version} created"
                for e in absent
            ]
            absent = []
    problems = [
        f"extension {e.name} {e.version} in schema {e.schema_name}: run "
        f"CREATE SCHEMA IF NOT EXISTS {_quote(e.schema_name)}; CREATE EXTENSION {_quote(e.name)}"
        f" WITH SCHEMA {_quote(e.schema_name)} VERSION '{e.version}';"
        for e in absent
    ]
    problems += [
        f"{o.kind} {o.identity}: create it as in the platform database (its structure is in"
        " the manifest's dependencies.definitions)"
        for o in missing_objects
    ]
    if problems:
        raise MissingDependency(
            "the target database lacks what the backup needs, nothing was restored: "
            + "; ".join(problems)
            + (
                " (or set RESTORE_CREATE_EXTENSIONS=true to create missing extensions)"
                if absent
                else ""
            )
        )
    return notes


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_in_schema(database_url: str, deps: Dependencies, original: str, schema: str) -> None:
    """Create `schema` with the extensions the backup had installed in `original` (its own
    schema); a database holds an extension once, so one installed elsewhere is refused."""
    extensions = deps.extensions_in(original)
    with psycopg.connect(database_url, autocommit=True) as conn:
        elsewhere = [e.name for e in extensions if _has_extension(conn, e)]
        if elsewhere:
            raise MissingDependency(
                f"extension {', '.join(elsewhere)} lives in schema {original!r} itself and this"
                " database has it already (a database holds an extension once): restore into"
                " another database, or under the schema's own name once it is gone"
            )
        missing = [
            e.name
            for e in extensions
            if not conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = %s", (e.name,)
            ).fetchone()
        ]
        if missing:
            raise MissingDependency(
                f"extension {', '.join(missing)} (installed in schema {original!r}) is not"
                " available on this server: install its package, then restore again"
            )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for ext in extensions:
            create_extension(conn, ext.model_copy(update={"schema_name": schema}))


def _has_extension(conn: psycopg.Connection, ext: ExtensionDependency) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (ext.name,)).fetchone()
    return row is not None


# How to look an object up by the identity pg_identify_object gave it.
LOOKUP = {
    "type": "to_regtype",
    "domain": "to_regtype",
    "function": "to_regprocedure",
    "aggregate": "to_regprocedure",
    "procedure": "to_regprocedure",
    "table": "to_regclass",
    "view": "to_regclass",
    "materialized view": "to_regclass",
    "sequence": "to_regclass",
    "foreign table": "to_regclass",
    "operator": "to_regoperator",
    "collation": "to_regcollation",
}


def _exists(conn: psycopg.Connection, obj: OutsideObject) -> bool:
    if obj.kind == "table constraint":  # "name on schema.table"
        name, _, table = obj.identity.partition(" on ")
        query = (
            "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s)"
            " AND conname = (parse_ident(%s))[1]"
        )
        return conn.execute(query, (table, name)).fetchone() is not None
    function = LOOKUP.get(obj.kind)
    if function is None:
        return True  # no lookup by name (a text search configuration): pg_restore will tell
    row = conn.execute(
        sql.SQL("SELECT {}(%s) IS NOT NULL").format(sql.Identifier(function)), (obj.identity,)
    ).fetchone()
    return bool(row and row[0])
