"""What peers run, timed as whole processes on the same schema: baseline A `pg_dump -Fc -f`,
baseline B `pg_dump -Fc | single-stream S3 upload`, the floor `pg_dump -Fc -Z0 > /dev/null`
(no compression at all: no pipeline that writes the dump can beat it), and for the directory
format baseline D `pg_dump -Fd -j N -f dir` with pg_dump's default compression."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from backup.pgdump import pg_bin_dir
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3


@dataclass(frozen=True)
class Timed:
    seconds: float
    size_bytes: int | None = None


def _pg_dump(pg: PostgresServer, schema: str) -> str:
    # The same selection as ours; the password comes from PGPASSWORD, never argv.
    args = [
        str(pg_bin_dir() / "pg_dump"),
        *("-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", "postgres"),
        f"--schema={schema}",
        "--no-owner",
        "--no-acl",
        "--no-password",
    ]
    return shlex.join(args)


def _run(command: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command!r} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return seconds


def baseline_a(pg: PostgresServer, schema: str, out: Path) -> Timed:
    env = {**os.environ, "PGPASSWORD": pg.password}
    seconds = _run(f"{_pg_dump(pg, schema)} -Fc -f {shlex.quote(str(out))}", env)
    return Timed(seconds, out.stat().st_size)


def baseline_b(pg: PostgresServer, schema: str, s3: SeaweedS3, key: str) -> Timed:
    env = {**os.environ, **s3.env(), "PGPASSWORD": pg.password}
    uploader = shlex.join([sys.executable, "-m", "bench.stream_upload", s3.bucket, key])
    seconds = _run(f"{_pg_dump(pg, schema)} -Fc | {uploader}", env)
    size = s3.client().head_object(Bucket=s3.bucket, Key=key)["ContentLength"]
    return Timed(seconds, int(size))


def floor(pg: PostgresServer, schema: str) -> Timed:
    env = {**os.environ, "PGPASSWORD": pg.password}
    return Timed(_run(f"{_pg_dump(pg, schema)} -Fc -Z0 > /dev/null", env))


def baseline_d(pg: PostgresServer, schema: str, out: Path, jobs: int) -> Timed:
    env = {**os.environ, "PGPASSWORD": pg.password}
    shutil.rmtree(out, ignore_errors=True)  # pg_dump -Fd refuses a directory that is not empty
    seconds = _run(f"{_pg_dump(pg, schema)} -Fd -j {jobs} -f {shlex.quote(str(out))}", env)
    return Timed(seconds, sum(f.stat().st_size for f in out.iterdir()))
