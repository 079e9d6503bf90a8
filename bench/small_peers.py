"""The peers of many small backups, on the same tiny tenants and at the same concurrency (the
worker's MAX_CONCURRENT_DUMPS): what a fleet of tenants costs without this project.

- shell loop: `pg_dump -Fc -n T | <boto3 upload process>` per tenant, as a cron script does;
- lean loop: one process that runs pg_dump and one PutObject per tenant (a reused boto3 client),
  the floor of "dump and store" with neither manifest nor verification.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.baselines import _pg_dump, _run
from devstack.postgres import PostgresServer
from devstack.seaweed import SeaweedS3


@dataclass(frozen=True)
class PeerLoop:
    label: str
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def shell_loop(pg: PostgresServer, s3: SeaweedS3, tenants: list[str], concurrency: int) -> PeerLoop:
    env = {**os.environ, **s3.env(), "PGPASSWORD": pg.password}

    def one(tenant: str) -> None:
        uploader = shlex.join(
            [sys.executable, "-m", "bench.stream_upload", s3.bucket, f"peers/shell/{tenant}.dump"]
        )
        _run(f"{_pg_dump(pg, tenant)} -Fc | {uploader}", env)

    return PeerLoop(
        "shell loop: pg_dump -Fc | upload process", len(tenants), _timed(one, tenants, concurrency)
    )


def lean_loop(pg: PostgresServer, s3: SeaweedS3, tenants: list[str], concurrency: int) -> PeerLoop:
    env = {**os.environ, "PGPASSWORD": pg.password}
    client = s3.client()

    def one(tenant: str) -> None:
        dump = subprocess.run(
            ["bash", "-c", f"{_pg_dump(pg, tenant)} -Fc"], env=env, capture_output=True, check=True
        )
        client.put_object(Bucket=s3.bucket, Key=f"peers/lean/{tenant}.dump", Body=dump.stdout)

    return PeerLoop(
        "lean loop: pg_dump + PutObject in one process",
        len(tenants),
        _timed(one, tenants, concurrency),
    )


def _timed(one: Callable[[str], None], tenants: list[str], concurrency: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, tenants))
    return time.perf_counter() - started
