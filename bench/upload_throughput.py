"""Upload throughput to a real SeaweedFS: this project's S3 backend (concurrent multipart,
per-part MD5 checks, post-upload verification) against a single-stream PUT of the same file
(what `aws s3 cp` without multipart, or a naive uploader, does) and a plain local copy.

    .venv/bin/python bench/upload_throughput.py [--mib 512] [--runs 3]

All three run in this process tree on the same file; figures are MB/s (10^6 bytes) and ratios
to the single-stream PUT. Median of --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backup.files import sha256_of
from backup.manifest import Manifest
from backup.models import Compression, DumpFormat
from backup.storage.base import Transfer
from backup.storage.s3 import MIB, S3Storage
from devstack.seaweed import SeaweedS3


def manifest_for(path: Path) -> Manifest:
    now = datetime.now(UTC)
    size = path.stat().st_size
    return Manifest(
        project_id="bench",
        project_name="bench",
        schema_name="bench",
        format=DumpFormat.CUSTOM,
        compression=Compression.ZSTD,
        artifact=path.name,
        size_bytes=size,
        raw_bytes=size,
        sha256=sha256_of(path),
        tables=[],
        table_count=0,
        pg_dump_version="-",
        server_version="-",
        started_at=now,
        finished_at=now,
        dump_seconds=0,
    )


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, SeaweedS3(Path(scratch) / "s3") as store:
        os.environ.update({k: v for k, v in store.env().items() if k.startswith("AWS_")})
        artifact = Path(scratch) / "artifact.bin"
        with artifact.open("wb") as f:  # incompressible, like a zstd artifact
            for _ in range(args.mib):
                f.write(os.urandom(MIB))
        manifest = manifest_for(artifact)
        storage = S3Storage(store.bucket, endpoint_url=store.endpoint_url, region="us-east-1")
        client = store.client()

        def ours() -> None:
            asyncio.run(storage.store(artifact, manifest, "bench/ours.bin", Transfer()))

        def single_stream() -> None:
            with artifact.open("rb") as body:
                client.put_object(Bucket=store.bucket, Key="bench/single.bin", Body=body)

        def local_copy() -> None:
            shutil.copyfile(artifact, Path(scratch) / "copy.bin")
            os.sync()

        results = {}
        for name, fn in [
            ("single-stream PUT", single_stream),
            ("export-backup S3", ours),
            ("local file copy", local_copy),
        ]:
            results[name] = statistics.median(timed(fn) for _ in range(args.runs))
        size_mb = artifact.stat().st_size / 1e6
        base = results["single-stream PUT"]
        print(
            f"\nupload of {args.mib} MiB to SeaweedFS {store.endpoint_url} (median of {args.runs})"
        )
        print(f"{'method':<20} {'seconds':>8} {'MB/s':>8} {'speed vs single PUT':>20}")
        for name, seconds in results.items():
            print(f"{name:<20} {seconds:8.2f} {size_mb / seconds:8.1f} {base / seconds:19.2f}x")


if __name__ == "__main__":
    main()
