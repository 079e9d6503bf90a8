"""What encryption at rest costs: the same dump of the largest sample schema (umbrella), with and
without age encryption in the stream, in this process, on the same PostgreSQL.

    .venv/bin/python bench/encryption_cost.py [--scale 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyrage

from backup.models import Compression, DumpFormat, Project
from backup.pgdump import pg_bin_dir
from backup.pipeline import PipelineOptions, dump_schema
from devstack.postgres import PostgresServer
from devstack.seed import seed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as scratch,
        PostgresServer(Path(scratch) / "pg") as pg,
    ):
        asyncio.run(seed(pg.url(), scale=args.scale))
        project = Project(project_id="umbrella", name="Umbrella", schema_name="umbrella")
        options = PipelineOptions(bin_dir=pg_bin_dir(), max_bytes=10**11)
        results: dict[str, tuple[float, int, int]] = {}
        for name, recipients in [("plain", None), ("age-encrypted", [recipient])]:
            times = []
            for run in range(args.runs):
                out = Path(scratch) / f"{name}-{run}"
                out.mkdir()
                started = time.perf_counter()
                outcome = dump_schema(
                    database_url=pg.url(),
                    project=project,
                    fmt=DumpFormat.CUSTOM,
                    compression=Compression.ZSTD,
                    out_dir=out,
                    base_name="b",
                    options=options,
                    recipients=recipients,
                )
                times.append(time.perf_counter() - started)
            manifest = outcome.manifest
            results[name] = (statistics.median(times), manifest.raw_bytes, manifest.size_bytes)
    base = results["plain"][0]
    print(f"\numbrella at scale {args.scale:g}, custom format, zstd, median of {args.runs}")
    print(
        f"{'pipeline':<15} {'seconds':>8} {'raw MB/s':>9} {'stored MB':>10} {'time vs plain':>14}"
    )
    for name, (seconds, raw, stored) in results.items():
        print(
            f"{name:<15} {seconds:8.2f} {raw / 1e6 / seconds:9.1f} {stored / 1e6:10.1f} "
            f"{seconds / base:13.2f}x"
        )


if __name__ == "__main__":
    main()
