"""Fleet speed: one BackupAllProjectsWorkflow over N tiny tenants, end to end, on one worker.

    .venv/bin/python -m bench.fleet_speed [--count 300] [--max-concurrent 16]   (and `make bench`)

The tenants (2 tables of 50 rows, as in bench/many_small.py) live in a database of their own
whose control plane lists only them, so the fleet covers exactly those N and the count is
checked: every project backed up once, none failed, none skipped, N objects in the bucket.
Printed beside the shell and lean peer loops (measured on the many-small tenants, same shape,
same concurrency) of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from backup.fleet_models import FleetRequest, FleetSummary
from backup.manifest import manifest_name
from bench.many_small import LIMITS, create_tiny_tenants, median_note, stack_pids
from bench.schema import settle
from bench.small_peers import PeerLoop, lean_loop, shell_loop
from bench.stack import BenchStack, BenchWorker
from bench.stack_cpu import StackCpu
from devstack.seed import CONTROL_PLANE_SQL, register_project
from workflows.fleet import BackupAllProjectsWorkflow

ROOT = Path(__file__).resolve().parent.parent
FLEET_DB = "fleet_bench"
MANIFEST_SUFFIX = manifest_name("")


@dataclass
class FleetSpeed:
    count: int
    seconds: float
    summary: FleetSummary
    stored: int  # artifacts of this run in the bucket
    request: FleetRequest
    limits: dict[str, str]
    cpu: str = ""
    peers: list[PeerLoop] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # of every run, when this is their median

    @property
    def ok(self) -> bool:
        s = self.summary
        return (
            s.succeeded == self.count == s.total == self.stored and not s.failed and not s.skipped
        )

    @property
    def per_second(self) -> float:
        return self.summary.succeeded / self.seconds

    def markdown(self) -> str:
        s, r = self.summary, self.request
        limits = ", ".join(f"{k}={v}" for k, v in self.limits.items())
        text = (
            f"One fleet backup (BackupAllProjectsWorkflow, max_concurrent {r.max_concurrent}, "
            f"page_size {r.page_size}) of {self.count} tiny tenants to S3, end to end on one "
            f"worker ({limits}):\n\n"
            "| projects | succeeded | failed | skipped | objects stored | runs "
            "| wall s | backups/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| {self.count} | {s.succeeded} | {s.failed} | {s.skipped} | {self.stored} "
            f"| {s.runs} | {self.seconds:.1f} | {self.per_second:.2f} |\n"
            + median_note(self.rates)
            + (f"\nCPU per backup: {self.cpu}\n" if self.cpu else "")
        )
        if s.failures:
            text += "\nFailures: " + "; ".join(f"{f.project_id}: {f.error}" for f in s.failures[:5])
        if self.peers:
            text += (
                "\n| method | backups/s | fleet x this |\n|---|---:|---:|\n"
                f"| fleet backup (every guarantee of a single backup) | {self.per_second:.2f} "
                "| 1.00 |\n"
            )
            for peer in self.peers:
                text += (
                    f"| {peer.label} | {peer.per_second:.2f} "
                    f"| {self.per_second / peer.per_second:.2f} |\n"
                )
        return text


def create_fleet_database(stack: BenchStack, count: int) -> str:
    """A database whose control plane lists exactly `count` ACTIVE tiny tenants."""
    url = stack.postgres.url(FLEET_DB)
    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (FLEET_DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(FLEET_DB)))
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in CONTROL_PLANE_SQL:
            conn.execute(statement)
        # Tenants of an earlier, larger run are no longer ACTIVE: the fleet covers `count`.
        conn.execute("UPDATE control_plane.projects SET status = 'SUSPENDED'")
        for project in create_tiny_tenants(url, count, register=False):
            register_project(conn, project, project, name=f"Fleet {project}")
    return url


def stored_manifests(stack: BenchStack) -> int:
    """Manifests of tiny-tenant backups in the bucket: one per stored backup."""
    assert stack.s3 is not None
    client = stack.s3.client()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=stack.s3.bucket, Prefix="backups/small_"
    ):
        count += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(MANIFEST_SUFFIX))
    return count


async def run_fleet(
    stack: BenchStack,
    count: int,
    tuning: dict[str, str] | None = None,
    max_concurrent: int = 16,
    page_size: int = 100,
    peers: list[PeerLoop] | None = None,
) -> FleetSpeed:
    url = create_fleet_database(stack, count)
    settle(url)
    limits = {**LIMITS, **{k: v for k, v in (tuning or {}).items() if k in LIMITS}}
    env = {"STORAGE_BACKEND": "s3", **(tuning or {}), **limits, "DATABASE_URL": url}
    request = FleetRequest(max_concurrent=max_concurrent, page_size=page_size)
    fleet_id = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    with BenchWorker(stack, env, "fleet-worker").running() as worker:
        await worker.backup("small_000")  # warm-up: sandbox, imports, connections
        before = stored_manifests(stack)
        assert worker.client is not None
        settings = stack.settings()
        with StackCpu(stack_pids(stack, worker.proc.pid)) as cpu:
            started = time.perf_counter()
            handle = await worker.client.start_workflow(
                BackupAllProjectsWorkflow.run,
                request.model_dump(mode="json", exclude_defaults=True),
                id=fleet_id,
                task_queue=settings.temporal_task_queue,
            )
            summary: FleetSummary = await handle.result()
            seconds = time.perf_counter() - started
    stored = stored_manifests(stack) - before
    result = FleetSpeed(count, seconds, summary, stored, request, limits)
    result.cpu = cpu.per_backup_ms(max(1, summary.succeeded))
    result.peers = list(peers or [])
    return result


def measure_peers(stack: BenchStack, sample: int, concurrency: int) -> list[PeerLoop]:
    """The peer loops on `sample` tenants of the same shape in the main database."""
    assert stack.s3 is not None
    tenants = create_tiny_tenants(stack.postgres.url(), sample)
    return [
        loop(stack.postgres, stack.s3, tenants, concurrency) for loop in (shell_loop, lean_loop)
    ]


def _main(args: argparse.Namespace) -> int:
    tuning = dict(item.split("=", 1) for item in args.worker_env)
    with BenchStack(args.home) as stack:
        concurrency = int({**LIMITS, **tuning}["MAX_CONCURRENT_DUMPS"])
        peers = measure_peers(stack, args.peer_sample, concurrency) if args.peer_sample else []
        result = asyncio.run(
            run_fleet(stack, args.count, tuning, args.max_concurrent, args.page_size, peers)
        )
    print(result.markdown())
    return 0 if result.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--max-concurrent", type=int, default=16)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument(
        "--peer-sample", type=int, default=100, help="tenants for the peers (0: skip)"
    )
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--home", type=Path, default=ROOT / ".dev" / "bench")
    return _main(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
