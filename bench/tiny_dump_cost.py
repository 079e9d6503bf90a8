"""What one tiny dump costs the database and the worker, part by part: the pipeline's dump step
(`backup.pipeline.dump_schema`, to a local spool, no S3) run back to back on the many-small
tenants, beside its parts alone (a connection, pg_dump of the schema).

    .venv/bin/python -m bench.tiny_dump_cost [--runs 100] [--schemas 0]

Prints, per operation, milliseconds of CPU per call: every PostgreSQL process (backends
reaped by the postmaster included), this process, and its children (pg_dump). `--schemas N`
first adds N empty-ish tenant schemas (2 tables each) beside the bench's, to show how a cost
grows with the database's size (dropped again at the end).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from backup.models import Compression, DumpFormat, Project
from backup.pgconn import client_connection
from backup.pgdump import pg_bin_dir, pg_dump_args
from backup.pipeline import PipelineOptions, dump_schema
from bench.many_small import create_tiny_tenants
from bench.stack import BenchStack
from bench.stack_cpu import postmaster_pid, tree_seconds

ROOT = Path(__file__).resolve().parent.parent


def _own() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def measure(postmaster: int, label: str, runs: int, op: Callable[[int], object]) -> str:
    op(0)  # warm: imports, caches, the first connection's catalog reads
    time.sleep(0.2)
    pg, (me, kids) = tree_seconds(postmaster), _own()
    started = time.perf_counter()
    for n in range(runs):
        op(n)
    wall = time.perf_counter() - started
    time.sleep(0.3)  # exited backends reaped
    pg2, (me2, kids2) = tree_seconds(postmaster), _own()

    def ms(seconds: float) -> str:
        return f"{seconds / runs * 1000:.1f}"

    return f"| {label} | {ms(wall)} | {ms(pg2 - pg)} | {ms(me2 - me)} | {ms(kids2 - kids)} |"


def add_schemas(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(count):
            s = sql.Identifier(f"filler_{n:04d}")
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            for table in ("a", "b"):
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (id int PRIMARY KEY, v text)").format(
                        s, sql.Identifier(table)
                    )
                )


def drop_schemas(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(count):
            s = sql.Identifier(f"filler_{n:04d}")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--schemas", type=int, default=0, help="filler schemas to add first")
    parser.add_argument("--home", type=Path, default=ROOT / ".dev" / "bench")
    parser.add_argument("--only", action="append", help="run only these operations")
    parser.add_argument(
        "--pg-dump-arg", action="append", default=[], help="extra argument for 'pg_dump alone'"
    )
    args = parser.parse_args(argv)
    with BenchStack(args.home) as stack:
        url = stack.postgres.url()
        projects = create_tiny_tenants(url, args.runs, register=False)
        if args.schemas:
            add_schemas(url, args.schemas)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM pg_namespace").fetchone()
            rels = conn.execute("SELECT count(*) FROM pg_class").fetchone()
        assert row is not None and rels is not None
        postmaster = postmaster_pid(stack.postgres.data_dir)
        bin_dir = pg_bin_dir()
        spool = Path(tempfile.mkdtemp(prefix="tiny-dump-"))
        options = PipelineOptions(bin_dir=bin_dir, max_bytes=1 << 30)

        def connect(_: int) -> None:
            with psycopg.connect(url) as conn:
                conn.execute("SELECT 1").fetchone()

        def pg_dump(n: int) -> None:
            with client_connection(url) as client:
                argv = pg_dump_args(
                    bin_dir, conninfo=client.conninfo, schema=projects[n], fmt=DumpFormat.CUSTOM
                )
                argv[1:1] = args.pg_dump_arg
                subprocess.run(
                    argv,
                    stdout=subprocess.DEVNULL,
                    check=True,
                    env={**os.environ, **client.env},
                    pass_fds=client.pass_fds,
                )

        def pipeline(n: int) -> None:
            project = Project(project_id=projects[n], name=projects[n], schema_name=projects[n])
            out = spool / f"run-{n}"
            out.mkdir()
            dump_schema(
                database_url=url,
                project=project,
                fmt=DumpFormat.CUSTOM,
                compression=Compression.ZSTD,
                out_dir=out,
                base_name="tiny",
                options=options,
            )
            shutil.rmtree(out)

        ops = {"connect + SELECT 1": connect, "pg_dump alone": pg_dump, "dump_schema": pipeline}
        print(
            f"{row[0]} schemas, {rels[0]} relations in the database; load {os.getloadavg()}\n"
            "| operation | wall ms | PostgreSQL CPU ms | this process ms | children ms |\n"
            "|---|---:|---:|---:|---:|"
        )
        for label, op in ops.items():
            if args.only and label not in args.only:
                continue
            print(measure(postmaster, label, args.runs, op), flush=True)
        shutil.rmtree(spool, ignore_errors=True)
        drop_schemas(url, args.schemas)  # the bench database as it was
        print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
