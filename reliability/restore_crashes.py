"""Restore cells of the crash matrix: SIGKILL a real worker while a RestoreBackupWorkflow
downloads, while pg_restore runs, and while the data is copied into the staging schema; a new
worker (same host, or another) takes over. Each restore must end verified, with exactly one
copy and 0 orphan scratch databases or staging schemas.

    .venv/bin/python -m reliability.restore_crashes [--cell copying] [--host other]

Starts its own dev stack (storage s3) in a temporary directory, prints a table and writes
reliability/results/restore_crashes.json. Reuses reliability/crashes.py's tenant, workers and
checks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from backup.models import ExportRequest, RestoreResult
from client import connect_with, start_export
from devstack.process import stop_process
from devstack.stack import DevStack
from reliability import harness
from reliability.crashes import (
    HOSTS,
    PART_MIB,
    PROJECT,
    CellFailed,
    Host,
    Row,
    check,
    seed_project,
    spawn_worker,
)
from reliability.harness import own_stack, text_table, write_json
from workflows.restore_backup import RestoreBackupWorkflow

RESULTS = harness.RESULTS / "restore_crashes.json"


@dataclass(frozen=True)
class RestoreCell:
    name: str
    what: str  # the moment, as the report says it


CELLS = [
    RestoreCell("downloading", "the artifact's download in the spool"),
    RestoreCell("pg_restore", "a pg_restore of the restore running"),
    RestoreCell("copying", "the data being copied into the staging schema"),
]


def leftovers(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'export_backup_restore_%'"
            " UNION ALL SELECT nspname FROM pg_namespace"
            " WHERE nspname LIKE 'export_backup_staging_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def probe(cell: RestoreCell, worker: subprocess.Popen[bytes], spool: Path) -> str | None:
    if cell.name == "downloading":
        partial = list(spool.glob("restore-*/artifact.partial"))
        return f"{partial[0].stat().st_size:,} bytes downloaded" if partial else None
    for proc in _children(worker.pid):
        try:
            if proc.name() != "pg_restore":
                continue
            copying = any("entry-" in arg for arg in proc.cmdline())  # a data relay's list
        except psutil.Error:
            continue  # it just ended
        if cell.name == "pg_restore" or copying:
            return f"pg_restore pid {proc.pid} running ({'data' if copying else 'structure'})"
    return None


async def run_cell(
    stack: DevStack, location: str, cell: RestoreCell, host: Host, work: Path
) -> Row:
    started = time.monotonic()
    queue = f"restore-crash-{cell.name}-{host}-{uuid.uuid4().hex[:6]}"
    folder = work / queue
    folder.mkdir(parents=True)
    spool_a = folder / "spool-a"
    spool_b = spool_a if host == "same" else folder / "spool-b"
    into = f"{PROJECT}_rc_{uuid.uuid4().hex[:6]}"
    workers: list[subprocess.Popen[bytes]] = []

    def env(host_id: str, spool: Path) -> dict[str, str]:
        return {
            "TEMPORAL_TASK_QUEUE": queue,
            "HOST_ID": host_id,
            "SPOOL_DIR": str(spool),
            "METRICS_PORT": "0",
            "S3_PART_SIZE_MIB": str(PART_MIB),
        }

    try:
        first = await asyncio.to_thread(
            spawn_worker, stack, folder / "worker-a.log", env("host-a", spool_a)
        )
        workers.append(first)
        client = await connect_with(stack.settings())
        handle = await client.start_workflow(
            RestoreBackupWorkflow.run,
            {"location": location, "into_schema": into},
            id=f"restore-crash-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        seen = await asyncio.to_thread(_wait_for, lambda: probe(cell, first, spool_a), first)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
        second = await asyncio.to_thread(
            spawn_worker,
            stack,
            folder / "worker-b.log",
            env("host-a" if host == "same" else "host-b", spool_b),
        )
        workers.append(second)
        result: RestoreResult = await asyncio.wait_for(handle.result(), timeout=300)
        check(result.verified, f"restored rows differ from the manifest: {result.row_counts}")
        left = leftovers(stack.postgres.url())
        check(left == [], f"orphans left: {left}")
        with psycopg.connect(stack.postgres.url()) as conn:
            copies = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (into,)
            ).fetchone()
        check(copies == (1,), f"{copies} copies of {into}")
        passed, detail = True, f"killed with {seen}; verified, 0 orphans"
    except (CellFailed, TimeoutError, OSError, RuntimeError) as err:
        passed, detail = False, f"{type(err).__name__}: {err}"
    finally:
        for proc in workers:
            stop_process(proc)
        with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{into}" CASCADE')
    return Row(cell.name, host, passed, detail, round(time.monotonic() - started, 1))


def _wait_for(seen: Callable[[], str | None], worker: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        check(worker.poll() is None, f"the worker exited early ({worker.returncode})")
        found = seen()
        if found:
            return found
        time.sleep(0.01)
    raise CellFailed("the moment to kill never came")


async def run_all(stack: DevStack, work: Path, cells: list[str], hosts: list[str]) -> list[Row]:
    client = await connect_with(stack.settings())
    backup = await (
        await start_export(client, stack.settings(), ExportRequest(project_id=PROJECT))
    ).result()
    rows = []
    for cell in CELLS:
        for host in HOSTS:
            if cell.name in cells and host in hosts:
                row = await run_cell(stack, backup.location, cell, host, work)
                print(
                    f"  {'PASS' if row.passed else 'FAIL'} restore {row.cell} / {row.host}"
                    f" ({row.seconds:.0f} s): {row.detail}",
                    flush=True,
                )
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", action="append", choices=[c.name for c in CELLS])
    parser.add_argument("--host", action="append", choices=list(HOSTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cells = args.cell or [c.name for c in CELLS]
    with (
        tempfile.TemporaryDirectory(prefix="restore-crashes-") as home,
        own_stack(Path(home) / "stack", storage="s3") as stack,
    ):
        seed_project(stack.postgres.url())
        rows = asyncio.run(run_all(stack, Path(home), cells, args.host or list(HOSTS)))
    print(text_table(rows, ["cell", "host", "passed", "seconds", "detail"]))
    passed = sum(r.passed for r in rows)
    print(f"restore cells: {passed}/{len(rows)} passed; wrote {write_json(rows, args.out)}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
