"""Restore speed, side by side on the same generated tenant schema: our restore beside the
original (restore_as under a new name, all or nothing) and under the schema's own name in an
empty database, against a bare `pg_restore -j 2` of the schema's uncompressed custom dump into
an empty database. Writes bench/restore_speed.md.

    .venv/bin/python -m bench.restore_speed [--quick] [--sizes 500,1000]   # its own PostgreSQL
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from backup.models import Compression, DumpFormat, Project
from backup.pgconn import client_connection
from backup.pgdump import exact_schema_pattern, pg_bin_dir
from backup.pipeline import PipelineOptions, dump_schema
from backup.restore import drop_schema, restore_as
from bench.schema import ensure_tenant
from devstack.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
FULL_SIZES = (500.0, 1000.0)
QUICK_SIZES = (30.0,)


def timed(action: Callable[..., object], *args: object, **kwargs: object) -> float:
    started = time.monotonic()
    action(*args, **kwargs)
    return time.monotonic() - started


def bare_pg_restore(server: PostgresServer, schema: str, work: Path) -> float:
    """pg_dump -Fc -Z0 (untimed), then the timed `pg_restore -j 2` into an empty database."""
    dump = work / "bare.dump"
    bin_dir = pg_bin_dir()
    with client_connection(server.url()) as client:
        subprocess.run(
            [
                str(bin_dir / "pg_dump"),
                "-Fc",
                "-Z0",
                f"--schema={exact_schema_pattern(schema)}",
                f"--file={dump}",
                f"--dbname={client.conninfo}",
            ],
            check=True,
            env={**client.env},
            pass_fds=client.pass_fds,
        )
    server.drop_database("bench_bare")
    server.create_database("bench_bare")
    with client_connection(server.url("bench_bare")) as client:
        args = [
            str(bin_dir / "pg_restore"),
            "-j",
            "2",
            "--no-owner",
            f"--dbname={client.conninfo}",
            str(dump),
        ]
        seconds = timed(
            subprocess.run, args, check=True, env={**client.env}, pass_fds=client.pass_fds
        )
    server.drop_database("bench_bare")
    dump.unlink()
    return seconds


def measure_size(server: PostgresServer, size: float) -> str:
    schema = f"bench_restore_{int(size)}"
    relation_bytes = ensure_tenant(server.url(), schema, size)
    with tempfile.TemporaryDirectory(prefix="restore-speed-") as folder:
        work = Path(folder)
        outcome = dump_schema(
            database_url=server.url(),
            project=Project(project_id=schema, name=schema, schema_name=schema),
            fmt=DumpFormat.CUSTOM,
            compression=Compression.ZSTD,
            out_dir=work,
            base_name="b",
            options=PipelineOptions(bin_dir=pg_bin_dir(), max_bytes=10**11),
        )
        bare = bare_pg_restore(server, schema, work)
        copy = f"{schema}_copy"
        drop_schema(server.url(), copy)
        artifact, manifest = outcome.artifact_path, outcome.manifest
        beside = timed(restore_as, artifact, manifest, server.url(), copy, pg_bin_dir())
        drop_schema(server.url(), copy)
        server.drop_database("bench_own")
        server.create_database("bench_own")
        own = timed(restore_as, artifact, manifest, server.url("bench_own"), schema, pg_bin_dir())
        server.drop_database("bench_own")
    return (
        f"| {relation_bytes / 1e6:.0f} MB | {bare:.2f} s | {beside:.2f} s | {beside / bare:.2f}"
        f" | {own:.2f} s | {own / bare:.2f} |"
    )


def measure(server: PostgresServer, sizes: tuple[float, ...]) -> list[str]:
    return [
        "| size | bare `pg_restore -j 2` | ours beside the original | x | ours, own name in an"
        " empty database | x |",
        "|---|---|---|---|---|---|",
        *(measure_size(server, size) for size in sizes),
    ]


def write(lines: list[str], quick: bool, path: Path = ROOT / "bench" / "restore_speed.md") -> None:
    path.write_text(
        "# Restore speed\n\n"
        f"`python -m bench.restore_speed{' --quick' if quick else ''}`; target: beside the original"
        " within 1.2 x the bare `pg_restore -j 2`.\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} MB")
    parser.add_argument("--sizes", type=lambda s: tuple(float(x) for x in s.split(",")))
    args = parser.parse_args()
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    with tempfile.TemporaryDirectory(prefix="restore-speed-pg-") as folder:
        server = PostgresServer(Path(folder) / "data")
        server.start()
        try:
            lines = measure(server, sizes)
        finally:
            server.stop()
    write(lines, args.quick)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
