"""Sample control plane and tenant schemas: realistic data to back up, generated server-side.

What the tenants hold is devstack.sample_tenants; this module creates the control plane, runs
each tenant's SQL under a fixed random seed, and marks a finished seed so a restart skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import psycopg
from psycopg import sql

from devstack.sample_tenants import SAMPLE_PROJECTS, TENANT_SQL, SampleProject

__all__ = ["CONTROL_PLANE_SQL", "SAMPLE_PROJECTS", "register_project", "schema_sizes", "seed"]

SEED_VERSION = 1
LOCK_ID = 0x5EED  # serializes concurrent seeders (make dev while tests run)

CONTROL_PLANE_SQL = (
    "CREATE SCHEMA IF NOT EXISTS control_plane",
    """
    CREATE TABLE IF NOT EXISTS control_plane.projects (
        id text PRIMARY KEY,
        name text NOT NULL,
        status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'DELETED')),
        schema_name text NULL,
        created_at timestamptz DEFAULT now()
    )
    """,
)

UPSERT_PROJECT = """
INSERT INTO control_plane.projects (id, name, status, schema_name)
VALUES (%s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, status = EXCLUDED.status, schema_name = EXCLUDED.schema_name
"""


def register_project(
    conn: psycopg.Connection,
    project_id: str,
    schema: str,
    *,
    name: str | None = None,
    status: str = "ACTIVE",
) -> None:
    """Add (or update) a tenant in control_plane.projects: for tests, harnesses and benches
    that bring their own schema."""
    conn.execute(UPSERT_PROJECT, (project_id, name or project_id, status, schema))


def _marker(scale: float) -> str:
    return f"devstack.seed v{SEED_VERSION} scale={scale:g}"


async def _schema_comment(conn: psycopg.AsyncConnection, schema: str) -> str | None:
    query = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s"
    row = await (await conn.execute(query, (schema,))).fetchone()
    return None if row is None else row[0]


async def _seed_tenant(
    conn: psycopg.AsyncConnection, project: SampleProject, scale: float, force: bool
) -> bool:
    """(Re)create one tenant schema in a single transaction; False if it is already seeded.

    The schema comment marks a finished seed of this version and scale, so a restarted dev
    stack skips the big tenants, and a seed interrupted halfway leaves nothing behind.
    """
    assert project.schema_name is not None
    schema = sql.Identifier(project.schema_name)
    if not force and await _schema_comment(conn, project.schema_name) == _marker(scale):
        return False
    counts = project.row_counts(scale)
    async with conn.transaction():
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        await conn.execute("SELECT setseed(0.42)")
        for statement in TENANT_SQL[project.id]:
            await conn.execute(statement, counts)
        comment = sql.SQL("COMMENT ON SCHEMA {} IS {}")
        await conn.execute(comment.format(schema, sql.Literal(_marker(scale))))
    return True


async def seed(database_url: str, *, scale: float = 1.0, force: bool = False) -> None:
    """Create the control plane and the sample tenants; re-running converges to the same state.

    Tenants already seeded at this scale are kept as they are unless `force` is set.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        async with conn.transaction():
            for statement in CONTROL_PLANE_SQL:
                await conn.execute(statement)
            for project in SAMPLE_PROJECTS:
                params = (project.id, project.name, project.status, project.schema_name)
                await conn.execute(UPSERT_PROJECT, params)
        for project in SAMPLE_PROJECTS:
            if project.schema_name is not None:
                await _seed_tenant(conn, project, scale, force)


async def schema_sizes(database_url: str) -> dict[str, int]:
    """Total relation bytes (tables, indexes, TOAST) of each sample schema, for reports."""
    query = """
    SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
    FROM pg_namespace n LEFT JOIN pg_class c
      ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
    WHERE n.nspname = ANY(%s)
    GROUP BY n.nspname
    """
    schemas = [p.schema_name for p in SAMPLE_PROJECTS if p.schema_name is not None]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute(query, (schemas,))).fetchall()
    return {name: size for name, size in rows}


def main() -> None:
    """`python -m devstack.seed [DATABASE_URL] [--scale X] [--force]`; prefer $DATABASE_URL."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("database_url", nargs="?", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies row counts")
    parser.add_argument("--force", action="store_true", help="recreate seeded tenants too")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("pass DATABASE_URL in the environment (keeps the password out of argv)")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    started = time.monotonic()
    asyncio.run(seed(args.database_url, scale=args.scale, force=args.force))
    sizes = asyncio.run(schema_sizes(args.database_url))
    for schema, size in sorted(sizes.items()):
        print(f"{schema:>15}  {size / 2**20:8.1f} MiB")
    print(f"seeded at scale {args.scale:g} in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
