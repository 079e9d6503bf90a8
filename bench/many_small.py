"""Many small projects: N tiny tenant backups started at once on one worker, with the worker's
concurrency limits (MAX_CONCURRENT_ACTIVITIES, MAX_CONCURRENT_DUMPS) doing the queueing.

    .venv/bin/python -m bench.many_small [--count 100]    (also run by `make bench`)

Reports backups per second, p50/p95 end-to-end latency and failures, and checks that the
worker has no more child processes or open files afterwards than before, and an empty spool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from backup.models import ExportRequest
from bench.schema import register_bench_project, settle
from bench.small_peers import PeerLoop, lean_loop, shell_loop
from bench.stack import BenchStack, BenchWorker
from bench.stack_cpu import StackCpu, postmaster_pid
from client import start_export

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"MAX_CONCURRENT_ACTIVITIES": "8", "MAX_CONCURRENT_DUMPS": "2"}


@dataclass
class ManySmall:
    count: int
    seconds: float
    latencies: list[float]
    failures: list[str]
    limits: dict[str, str]
    before: tuple[int, int]  # worker's (child processes, open fds other than sockets)
    after: tuple[int, int]
    spool_left: list[str]
    peers: list[PeerLoop] = field(default_factory=list)
    workers: int = 1
    scale_out: ManySmall | None = None  # the same run on more worker processes
    cpu: str = ""  # CPU per backup of each part of the stack, over the timed part
    rates: list[float] = field(default_factory=list)  # of every run, when this is their median

    @property
    def ok(self) -> bool:
        no_leak = self.after[0] <= self.before[0] and self.after[1] <= self.before[1]
        more = self.scale_out is None or self.scale_out.ok
        return not self.failures and no_leak and not self.spool_left and more

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def p95(self) -> float:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0.0] * 99
        return q[94]

    def markdown(self) -> str:
        limits = ", ".join(f"{k}={v}" for k, v in self.limits.items())
        on = "one worker" if self.workers == 1 else f"{self.workers} workers (distinct HOST_IDs)"
        text = (
            f"{self.count} tiny tenant backups (2 tables, 50 rows each, storage s3) started at "
            f"once on {on} ({limits}):\n\n"
            "| backups | failures | wall s | backups/s | p50 latency s | p95 latency s "
            "| worker children before → after | worker open files before → after "
            "| spool entries left |\n"
            "|---:|---:|---:|---:|---:|---:|---|---|---:|\n"
            f"| {self.count} | {len(self.failures)} | {self.seconds:.1f} "
            f"| {self.per_second:.2f} "
            f"| {statistics.median(self.latencies):.1f} | {self.p95:.1f} "
            f"| {self.before[0]} → {self.after[0]} | {self.before[1]} → {self.after[1]} "
            f"| {len(self.spool_left)} |\n"
            + (f"\nFailures: {'; '.join(self.failures[:5])}\n" if self.failures else "")
            + median_note(self.rates)
            + (f"\nCPU per backup: {self.cpu}\n" if self.cpu else "")
        )
        if self.peers:
            text += (
                "\nThe same tenants, side by side in this run, at the same concurrency:\n\n"
                "| method | backups/s | ours x this |\n|---|---:|---:|\n"
                f"| ours (full workflow: manifest, SHA-256, verify, notify, retention) "
                f"| {self.per_second:.2f} | 1.00 |\n"
            )
            for peer in self.peers:
                text += (
                    f"| {peer.label} | {peer.per_second:.2f} "
                    f"| {self.per_second / peer.per_second:.2f} |\n"
                )
        if self.scale_out is not None:
            text += "\n" + self.scale_out.markdown()
        return text


def median_note(rates: list[float]) -> str:
    """Which run a table shows, when it is the median of several."""
    if len(rates) < 2:
        return ""
    shown = ", ".join(f"{r:.2f}" for r in rates)
    return f"\nOne of {len(rates)} runs, the median unless one failed (backups/s: {shown}).\n"


def create_tiny_tenants(url: str, count: int, register: bool = True) -> list[str]:
    ids = [f"small_{n:03d}" for n in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        for project in ids:
            s = sql.Identifier(project)
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (project,)
            ).fetchone()
            if not exists:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {}.notes AS SELECT g AS id, md5(g::text) AS body "
                            "FROM generate_series(1, 50) g"
                        ).format(s)
                    )
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {}.users AS SELECT g AS id, 'u' || g AS name "
                            "FROM generate_series(1, 50) g"
                        ).format(s)
                    )
            if register:
                register_bench_project(url, project, project)
    return ids


def _usage(pid: int) -> tuple[int, int]:
    """Child processes and open fds but sockets: the shared S3 client keeps a bounded pool of
    connections (max_pool_connections) open on purpose, and how many depends on the load."""
    proc = psutil.Process(pid)
    sockets = len(proc.net_connections(kind="all"))
    return len(proc.children(recursive=True)), proc.num_fds() - sockets


async def run_many_small(
    stack: BenchStack,
    count: int,
    tuning: dict[str, str] | None = None,
    peers: bool = True,
    workers: int = 1,
    profile: Path | None = None,
) -> ManySmall:
    projects = create_tiny_tenants(stack.postgres.url(), count)
    settle(stack.postgres.url())
    limits = {**LIMITS, **{k: v for k, v in (tuning or {}).items() if k in LIMITS}}
    env = {"STORAGE_BACKEND": "s3", **(tuning or {}), **limits}
    spool = Path(stack.env["SPOOL_DIR"])
    with contextlib.ExitStack() as more:
        # Scale-out: further worker processes on the same Temporal, each its own host (HOST_ID
        # and spool); "before/after" is measured on the first.
        others: dict[str, int] = {}
        for n in range(1, workers):
            extra = {**env, "HOST_ID": f"bench-{n}", "SPOOL_DIR": f"{spool}-{n}"}
            other = more.enter_context(BenchWorker(stack, extra, f"worker-{n}").running())
            others[f"worker {n + 1} (with pg_dump)"] = other.proc.pid
        result = await _run_on(stack, env, spool, projects, limits, profile, others)
    result.workers = workers
    if peers:
        assert stack.s3 is not None
        concurrency = int(limits["MAX_CONCURRENT_DUMPS"])
        for loop in (shell_loop, lean_loop):
            result.peers.append(loop(stack.postgres, stack.s3, projects, concurrency))
    return result


async def _run_on(
    stack: BenchStack,
    env: dict[str, str],
    spool: Path,
    projects: list[str],
    limits: dict[str, str],
    profile: Path | None = None,
    other_workers: dict[str, int] | None = None,
) -> ManySmall:
    """`other_workers`: the scale-out's further worker processes, whose CPU counts too."""
    count = len(projects)
    with BenchWorker(stack, env).running() as worker:
        await worker.backup("acme")  # warm-up, so "before" holds the steady-state fds
        await asyncio.sleep(1)
        before = _usage(worker.proc.pid)
        settings = stack.settings()
        assert worker.client is not None
        client = worker.client

        async def one(project: str) -> float:
            request = ExportRequest(project_id=project, request_id=uuid.uuid4().hex[:16])
            started = time.perf_counter()
            handle = await start_export(client, settings, request)
            await handle.result()
            return time.perf_counter() - started

        with contextlib.ExitStack() as watch:
            pids = {**stack_pids(stack, worker.proc.pid), **(other_workers or {})}
            cpu = watch.enter_context(StackCpu(pids))
            if profile is not None:
                watch.enter_context(py_spy(worker.proc.pid, profile))
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(one(p) for p in projects), return_exceptions=True)
            seconds = time.perf_counter() - started
        await asyncio.sleep(2)  # let the last notifications and pollers settle
        after = _usage(worker.proc.pid)
    latencies = [o for o in outcomes if isinstance(o, float)]
    failures = [
        f"{p}: {o!r}"
        for p, o in zip(projects, outcomes, strict=True)
        if isinstance(o, BaseException)
    ]
    left = [p.name for p in spool.iterdir()] if spool.exists() else []
    result = ManySmall(count, seconds, latencies, failures, limits, before, after, left)
    result.cpu = cpu.per_backup_ms(count)
    return result


def stack_pids(stack: BenchStack, worker: int) -> dict[str, int]:
    assert stack.temporal.pid is not None and stack.s3 is not None and stack.s3.pid is not None
    return {
        "Temporal dev server": stack.temporal.pid,
        "worker (with pg_dump)": worker,
        "PostgreSQL": postmaster_pid(stack.postgres.data_dir),
        "SeaweedFS": stack.s3.pid,
    }


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """Sample the worker with py-spy (`pip install py-spy`; measurement only) into a collapsed
    stack file ("frame;frame;... count" per line), for flame graphs or per-frame shares (see
    bench/findings.md, "A tiny backup's worker CPU")."""
    spy = Path(sys.executable).with_name("py-spy")
    proc = subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--subprocesses",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)  # attached before the first backup starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _main(args: argparse.Namespace) -> int:
    tuning = dict(item.split("=", 1) for item in args.worker_env)
    with BenchStack(args.home) as stack:
        result = asyncio.run(
            run_many_small(stack, args.count, tuning, not args.no_peers, args.workers, args.profile)
        )
    print(result.markdown())
    return 0 if result.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (HOST_IDs)")
    parser.add_argument("--home", type=Path, default=ROOT / ".dev" / "bench")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting (repeatable)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the shell and lean loops")
    parser.add_argument("--profile", type=Path, help="py-spy the worker into this raw file")
    return _main(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
