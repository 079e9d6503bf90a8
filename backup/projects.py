"""Project lookup in the platform's control plane (parameterized queries only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import psycopg

from backup.errors import ConfigurationError, ProjectInactive, ProjectNotFound, SchemaNotFound
from backup.models import Project

# One round trip: the project's row as JSON (name and schema_name are optional columns:
# platforms that key the schema by the project id, or keep no display name, leave them out),
# whether its schema exists, and, when asked, the bytes of the schema's relations (tables with
# their indexes and TOAST, materialized views), which decide the one-step backup.
PROJECT_SQL = """
SELECT p.row, n.oid IS NOT NULL, CASE WHEN %(sized)s THEN (
        SELECT coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)
        FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
    ) END
FROM (SELECT to_jsonb(projects) AS row FROM control_plane.projects WHERE id = %(id)s) p
LEFT JOIN pg_catalog.pg_namespace n
    ON n.nspname = coalesce(p.row->>'schema_name', p.row->>'id')
"""


async def find_active_project(
    database_url: str, project_id: str, small_max_bytes: int = 0
) -> Project:
    """The ACTIVE project with this id and its schema (schema_name column, else the id);
    `small` when its relations take at most `small_max_bytes` (0: never)."""
    return await with_connection(
        database_url, lambda conn: _find(conn, project_id, small_max_bytes)
    )


async def _find(conn: psycopg.AsyncConnection, project_id: str, small_max_bytes: int) -> Project:
    try:
        params = {"id": project_id, "sized": small_max_bytes > 0}
        found = await (await conn.execute(PROJECT_SQL, params)).fetchone()
    except psycopg.errors.UndefinedTable as err:
        raise ConfigurationError(
            "table control_plane.projects does not exist: DATABASE_URL points to the wrong database"
        ) from err
    except psycopg.errors.UndefinedColumn as err:
        raise ConfigurationError(
            f"control_plane.projects lacks a column backups need ({err.diag.message_primary}):"
            " it must have id and status (name and schema_name are optional)"
        ) from err
    if found is None:
        raise ProjectNotFound(
            f"project {project_id!r} not found in control_plane.projects; check the id"
        )
    row, schema_exists, size = found
    if "status" not in row:
        raise ConfigurationError(
            "control_plane.projects lacks a column backups need (status): it must have id and"
            " status (name and schema_name are optional)"
        )
    if row["status"] != "ACTIVE":
        raise ProjectInactive(
            f"project {project_id!r} is {row['status']}, not ACTIVE; only active projects are "
            "backed up"
        )
    schema = _text(row.get("schema_name")) or project_id
    if not schema_exists:
        raise SchemaNotFound(
            f"schema {schema!r} of project {project_id!r} does not exist; fix "
            "control_plane.projects.schema_name or create the schema"
        )
    name = _text(row.get("name")) or project_id
    small = size is not None and size <= small_max_bytes
    return Project(project_id=project_id, name=name, schema_name=schema, small=small)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def connect(database_url: str) -> psycopg.AsyncConnection:
    """Connect, turning a rejected login into a non-retryable configuration error."""
    try:
        return await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    except psycopg.OperationalError as err:
        if "authentication failed" in str(err) or "no password supplied" in str(err):
            raise ConfigurationError(
                "the database rejected the credentials in DATABASE_URL; fix DATABASE_URL"
            ) from err
        raise


T = TypeVar("T")
# Idle connections kept per (event loop, DATABASE_URL): validation and the fleet listing run
# once per backup, and a new connection (backend start and SCRAM handshake on both sides) cost
# more than their queries. Busier moments open more, closed after use beyond this many.
IDLE_CONNECTIONS = 4
_idle: dict[tuple[asyncio.AbstractEventLoop, str], list[psycopg.AsyncConnection]] = {}


async def with_connection(
    database_url: str, query: Callable[[psycopg.AsyncConnection], Awaitable[T]]
) -> T:
    """Run `query` (read-only) on a kept connection; one that the server closed meanwhile
    (a restart, idle timeout) is dropped and the query runs once more on a new one."""
    key = (asyncio.get_running_loop(), database_url)
    for key_gone in [k for k in _idle if k[0] is not key[0] and k[0].is_closed()]:
        del _idle[key_gone]  # their loop is gone, and their sockets with it
    idle = _idle.setdefault(key, [])
    while idle:
        conn = idle.pop()
        if conn.closed:
            continue
        try:
            async with _kept(conn, idle):
                return await query(conn)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
    async with _kept(await connect(database_url), idle) as conn:
        return await query(conn)


@asynccontextmanager
async def _kept(
    conn: psycopg.AsyncConnection, idle: list[psycopg.AsyncConnection]
) -> AsyncIterator[psycopg.AsyncConnection]:
    """Back to `idle` after a clean use (errors raised by the queries included, autocommit
    leaves no transaction open); closed when broken or when enough are idle."""
    try:
        yield conn
    finally:
        if conn.broken or conn.closed or len(idle) >= IDLE_CONNECTIONS:
            await conn.close()
        else:
            idle.append(conn)


async def close_kept_connections() -> None:
    """Close this event loop's idle connections (worker shutdown, tests)."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _idle if k[0] is loop]:
        for conn in _idle.pop(key):
            await conn.close()


# Keyset pagination: each page starts after the last id of the previous one, so projects added
# or removed meanwhile never shift a page (OFFSET would skip or repeat them).
ACTIVE_PROJECTS_PAGE_SQL = """
SELECT id FROM control_plane.projects
WHERE status = 'ACTIVE' AND (%(after)s::text IS NULL OR id > %(after)s)
ORDER BY id
LIMIT %(limit)s
"""


async def list_active_project_ids(database_url: str, after: str | None, limit: int) -> list[str]:
    """Ids of ACTIVE projects after `after` (exclusive) in id order, at most `limit`."""

    async def page(conn: psycopg.AsyncConnection) -> list[str]:
        try:
            cursor = await conn.execute(ACTIVE_PROJECTS_PAGE_SQL, {"after": after, "limit": limit})
        except psycopg.errors.UndefinedTable as err:
            raise ConfigurationError(
                "table control_plane.projects does not exist: DATABASE_URL points to the wrong "
                "database"
            ) from err
        return [row[0] for row in await cursor.fetchall()]

    return await with_connection(database_url, page)
