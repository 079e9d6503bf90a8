"""The crash matrix: a real worker process is killed while one step of a backup runs, a new
worker takes over (same HOST_ID and spool, or another host), and the backup must still end with
exactly one verified artifact, no leftovers, one notification per channel and no needless dump.

Shared by `reliability/crash_matrix.py` (every cell) and
`tests/reliability/test_crash_matrix.py` (a few).
Workers run `reliability.crashy_worker` (the production worker plus a harness interceptor and
shortened timeouts, see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil
import psycopg
from temporalio.client import Client, WorkflowHandle

from backup.models import ExportRequest, ExportResult
from client import connect_with, start_export
from devstack.process import stop_process
from devstack.seed import register_project
from devstack.stack import DevStack
from reliability.crash_checks import PART_MIB, PROJECT, CellFailed, OutcomeChecks, _files, check

ROOT = Path(__file__).resolve().parent.parent
RANDOM_MIB = 24  # random bytes in the tenant: ~25 MB stored, 5 parts of 5 MiB
Host = Literal["same", "other"]
# The killed worker takes 0.3 s per MiB of dump (~15 s), so "early" and "late" are far apart.
# (Not zstd level 19: its large jobs block the progress callback that heartbeats for > 10 s.)
SLOW_DUMP = {"CRASH_SLOW_CHUNK_SECONDS": "0.3"}
# The killed worker sends one part at a time, a second apart, so the kill lands mid-upload:
# in the upload step (parts only after the dump), or while the dump sends its parts.
SLOW_UPLOAD = {
    "CRASH_SLOW_PART_SECONDS": "1",
    "S3_CONCURRENCY": "1",
    "S3_UPLOAD_WHILE_DUMPING": "false",
}
SLOW_PARTS = {"CRASH_SLOW_PART_SECONDS": "1", "S3_CONCURRENCY": "1"}
GRACE_SECONDS = 2  # SHUTDOWN_GRACE_SECONDS of the worker that gets SIGTERM
# The tenant counts as small: one local activity dumps and stores it (back_up_small_schema).
ONE_STEP = {"SMALL_SCHEMA_MAX_BYTES": str(64 * 1024 * 1024)}


@dataclass(frozen=True)
class Cell:
    name: str
    # What the killed worker waits for before the signal: "marker" (CRASH_AT entered),
    # "pg_dump" (child process running), "spool" (artifact past 60 %), "part" (≥1 part stored).
    trigger: str
    crash_at: str | None = None
    crash_in: str | None = None  # "module:function": the marker is a part of an activity
    env: dict[str, str] = field(default_factory=dict)
    sig: signal.Signals = signal.SIGKILL
    # How many times dump_schema may run in total, per host of the new worker.
    dumps: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    resumes_upload: bool = False  # the new worker's upload must resume, not start over
    both_env: dict[str, str] = field(default_factory=dict)  # for the new worker too


Dumps = dict[str, tuple[int, ...]]
BOTH_ONE: Dumps = {"same": (1,), "other": (1,)}
BOTH_TWO: Dumps = {"same": (2,), "other": (2,)}  # the dump itself was cut off
REDUMP_ELSEWHERE: Dumps = {
    "same": (1,),
    "other": (2,),
}  # pinned step: another host needs its own spool
CELLS = [
    Cell("validate", "marker", "validate_project", dumps=BOTH_ONE),
    Cell("dump early", "pg_dump", env=SLOW_DUMP, dumps=BOTH_TWO),
    Cell("dump late", "spool", env=SLOW_DUMP, dumps=BOTH_TWO),
    # store_artifact verifies, uploads, then removes the spool: a kill in each part.
    Cell("store verify", "marker", crash_in="activities.verify:_verify", dumps=REDUMP_ELSEWHERE),
    Cell("upload mid-way", "part", env=SLOW_UPLOAD, dumps=REDUMP_ELSEWHERE, resumes_upload=True),
    # Parts sent while dumping: the dump is redone after the old upload is aborted; with
    # SPOOL_MODE=stream there is no spool file to fall back on either.
    Cell("dump sending parts", "part", env=SLOW_PARTS, dumps=BOTH_TWO),
    Cell(
        "stream dump",
        "part",
        env=SLOW_PARTS,
        dumps=BOTH_TWO,
        both_env={"SPOOL_MODE": "stream"},
    ),
    Cell("notify", "marker", "deliver_notification_v2", dumps=BOTH_ONE),
    # The one-step backup of a small schema, a local activity: the worker dies with its
    # workflow task, and the next worker to run the task does the whole step again (after
    # aborting the parts the dead one sent, found under the run's key when it is another host).
    Cell("one-step dump", "pg_dump", env=SLOW_DUMP, dumps=BOTH_TWO, both_env=ONE_STEP),
    Cell("one-step parts", "part", env=SLOW_PARTS, dumps=BOTH_TWO, both_env=ONE_STEP),
    # Killed after the upload, while removing the spool: the same host stores again under the
    # same key; another host has no spool to retry from, so the run dumps again there.
    Cell("store cleanup", "marker", crash_in="activities.store:remove_run", dumps=REDUMP_ELSEWHERE),
    # Graceful: pg_dump can not checkpoint, so a dump cut off by the grace runs again (or
    # finished within it); an upload checkpoints its parts and resumes.
    Cell(
        "SIGTERM dump",
        "pg_dump",
        env=SLOW_DUMP,
        sig=signal.SIGTERM,
        dumps={"same": (1, 2), "other": (2,)},
    ),
    Cell(
        "SIGTERM upload",
        "part",
        env=SLOW_UPLOAD,
        sig=signal.SIGTERM,
        dumps=REDUMP_ELSEWHERE,
        resumes_upload=True,
    ),
]
HOSTS: tuple[Host, ...] = ("same", "other")


def cell(name: str) -> Cell:
    return next(c for c in CELLS if c.name == name)


@dataclass
class Row:
    cell: str
    host: Host
    passed: bool
    detail: str
    seconds: float


def seed_project(database_url: str) -> None:
    """A tenant of random bytes (incompressible once hex-decoded): tens of MB, several parts."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM control_plane.projects WHERE id = %s", (PROJECT,)
        ).fetchone()
        if exists:
            return
        conn.execute(f"DROP SCHEMA IF EXISTS {PROJECT} CASCADE")
        conn.execute(f"CREATE SCHEMA {PROJECT}")
        conn.execute(
            f"CREATE TABLE {PROJECT}.blobs AS SELECT g AS id,"
            " (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')"
            "  FROM generate_series(1, 4096) i) AS body"  # 64 KiB per row
            f" FROM generate_series(1, {RANDOM_MIB * 16}) g"
        )
        register_project(conn, PROJECT, PROJECT, name="Crash matrix")


def spawn_worker(
    stack: DevStack, log_file: Path, env: dict[str, str], timeout: float = 90
) -> subprocess.Popen[bytes]:
    """The harness worker as a process, ready to poll when this returns."""
    harness = [sys.executable, "-m", "reliability.crashy_worker"]
    return stack.spawn_worker(log_file, env, timeout, argv=harness)


class Matrix:
    """Runs cells against one dev stack (storage="s3"); each cell gets its own task queue."""

    def __init__(self, stack: DevStack, workdir: Path) -> None:
        assert stack.s3 is not None and stack.storage == "s3", "the matrix needs the S3 store"
        self.stack = stack
        self.workdir = workdir
        self.s3 = stack.s3.client()
        self.bucket = stack.s3.bucket
        self._client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect_with(self.stack.settings())
        return self._client

    async def run(self, c: Cell, host: Host) -> Row:
        started = time.monotonic()
        queue = f"crash-{c.name.replace(' ', '-').lower()}-{host}-{uuid.uuid4().hex[:6]}"
        run = _Run(self, c, host, self.workdir / queue, queue)
        try:
            notes = await run.execute()
            passed, detail = True, "; ".join(notes)
        except Exception as err:  # a failed cell is a row, not the end of the matrix
            passed, detail = False, f"{type(err).__name__}: {err}{run.context()}"
            await run.abandon()
        finally:
            run.stop_workers()
        return Row(c.name, host, passed, detail, round(time.monotonic() - started, 1))


class _Run(OutcomeChecks):
    def __init__(self, matrix: Matrix, c: Cell, host: Host, folder: Path, queue: str) -> None:
        self.m, self.cell, self.host, self.folder, self.queue = matrix, c, host, folder, queue
        folder.mkdir(parents=True)
        self.events = folder / "events.jsonl"
        self.marker = folder / "crash-marker"
        self.spool_a = folder / "spool-a"
        self.spool_b = self.spool_a if host == "same" else folder / "spool-b"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.handle: WorkflowHandle[Any, ExportResult] | None = None

    def env(self, host_id: str, spool: Path, extra: dict[str, str]) -> dict[str, str]:
        return {
            "TEMPORAL_TASK_QUEUE": self.queue,
            "HOST_ID": host_id,
            "SPOOL_DIR": str(spool),
            "METRICS_PORT": "0",
            "S3_PART_SIZE_MIB": str(PART_MIB),
            "SHUTDOWN_GRACE_SECONDS": "5",
            "CRASH_EVENTS": str(self.events),
            **extra,
        }

    async def execute(self) -> list[str]:
        c = self.cell
        crash_env = {**c.both_env, **c.env, "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}
        if c.crash_at:
            crash_env |= {"CRASH_AT": c.crash_at, "CRASH_MARKER": str(self.marker)}
        if c.crash_in:
            crash_env |= {"CRASH_IN": c.crash_in, "CRASH_MARKER": str(self.marker)}
        first = await asyncio.to_thread(
            spawn_worker,
            self.m.stack,
            self.folder / "worker-a.log",
            self.env("host-a", self.spool_a, crash_env),
        )
        self.workers.append(first)
        client = await self.m.client()
        settings = self.m.stack.settings().model_copy(update={"temporal_task_queue": self.queue})
        self.handle = await start_export(client, settings, ExportRequest(project_id=PROJECT))
        notes = [await asyncio.to_thread(self.wait_for_trigger, first)]

        signalled = time.monotonic()
        first.send_signal(c.sig)
        code = await asyncio.to_thread(first.wait, GRACE_SECONDS + 60)
        if c.sig == signal.SIGTERM:
            took = time.monotonic() - signalled
            check(code == 0, f"SIGTERM: the worker exited with {code}")
            check(took < GRACE_SECONDS + 15, f"SIGTERM: the worker took {took:.1f} s to exit")
            notes.append(f"SIGTERM exit 0 after {took:.1f} s (grace {GRACE_SECONDS} s)")

        host_b = "host-a" if self.host == "same" else "host-b"
        second = await asyncio.to_thread(
            spawn_worker,
            self.m.stack,
            self.folder / "worker-b.log",
            self.env(host_b, self.spool_b, c.both_env),
        )
        self.workers.append(second)
        result = await asyncio.wait_for(self.handle.result(), timeout=300)
        notes.append(f"completed in {result.duration_seconds:.0f} s")
        notes += await self.check_outcome(result)
        return notes

    def wait_for_trigger(self, proc: subprocess.Popen[bytes], timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        probe: Callable[[], str | None] = {
            "marker": self._entered,
            "pg_dump": lambda: self._pg_dump_running(proc.pid),
            "spool": self._spool_late,
            "part": self._part_stored,
        }[self.cell.trigger]
        while time.monotonic() < deadline:
            check(proc.poll() is None, f"the worker exited early ({proc.returncode})")
            seen = probe()
            if seen:
                return seen
            # Progress triggers come before the upload ends; a late marker never comes.
            if self.cell.trigger != "marker":
                check(not self._upload_finished(), f"missed the moment: {self.cell.trigger}")
            time.sleep(0.05)
        raise CellFailed(f"trigger {self.cell.trigger!r} never came")

    def _entered(self) -> str | None:
        where = self.cell.crash_at or self.cell.crash_in
        return f"killed inside {where}" if self.marker.exists() else None

    def _pg_dump_running(self, pid: int) -> str | None:
        try:
            children = psutil.Process(pid).children(recursive=True)
            running = [p for p in children if p.name() == "pg_dump"]
        except psutil.Error:
            return None
        if not running:
            return None
        return f"pg_dump pid {running[0].pid} running; {self._spool_bytes():,} bytes spooled"

    def _spool_bytes(self) -> int:
        return sum(p.stat().st_size for p in _files(self.spool_a))

    def _spool_late(self) -> str | None:
        done = self._spool_bytes()
        expected = RANDOM_MIB * 1024 * 1024  # hex dump of N random bytes zstd-packs to ~N
        if done < 0.6 * expected or not self._dump_running():
            return None
        return f"{done:,} of ~{expected:,} bytes spooled ({done / expected:.0%})"

    def _dump_running(self) -> bool:
        after = {"store_artifact", "verify_artifact"}  # the steps after the dump
        return not any(e.get("activity") in after for e in self.read_events())

    def _part_stored(self) -> str | None:
        journals = list(self.spool_a.glob("*/upload-state.json"))
        if not journals:
            return None
        try:
            state = json.loads(journals[0].read_text())
            parts = self.m.s3.list_parts(
                Bucket=self.m.bucket, Key=state["key"], UploadId=state["upload_id"]
            ).get("Parts", [])
        except (ValueError, KeyError, OSError):
            return None
        if not parts:
            return None
        return f"journal has upload {state['upload_id'][:8]}…, {len(parts)} part(s) stored"

    def _upload_finished(self) -> bool:
        return any(
            e.get("event") == "store" and "CompleteMultipartUpload" in e["requests"]
            for e in self.read_events()
        )

    def read_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]

    async def abandon(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):  # already finished, or the server is gone
                await self.handle.terminate("crash matrix cell failed")

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_process(proc, timeout=30)

    def context(self) -> str:
        """The end of the workers' logs, for a failed cell's detail."""
        tails = []
        for name in ("worker-a.log", "worker-b.log"):
            log = self.folder / name
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()[-8:]
                tails.append(f"\n  [{name}] " + "\n  ".join(lines))
        return "".join(tails)
