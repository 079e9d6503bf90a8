"""This project's side of the comparison: the dev stack (PostgreSQL, Temporal, SeaweedFS) and a
real worker subprocess per configuration, timed from workflow start to result."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from backup.models import DumpFormat, ExportRequest, ExportResult
from bench.machine import PeakRss, vm_hwm
from client import connect_with, start_export
from devstack.process import stop_process
from devstack.seed import seed
from devstack.stack import DevStack, step

# Peers neither encrypt nor sign: off for the comparison, on for one extra run.
SECURITY = ("ENCRYPTION_RECIPIENTS", "MANIFEST_SIGNING_KEY_FILE", "MANIFEST_VERIFY_KEY_FILE")


class BenchStack(DevStack):
    """The dev stack with free ports, console notifications only, and no worker of its own."""

    def __init__(self, home: Path) -> None:
        super().__init__(
            home,
            temporal_port=None,
            ui_port=None,
            metrics_port=0,
            scale=0.01,
            storage="s3",
            s3=True,
        )
        self.encrypted = False

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env["NOTIFY_CHANNELS"] = "console"
        if not self.encrypted:
            for name in SECURITY:
                env.pop(name, None)
        return env

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        step("PostgreSQL 18", self.postgres.start)
        step("control plane", lambda: asyncio.run(seed(self.postgres.url(), scale=self.scale)))
        step("Temporal dev server", self.temporal.start)
        assert self.s3 is not None
        # The bench's bucket holds nothing worth keeping, and what earlier runs left in it
        # slowed the next: full 1 GB volumes leave few to write to, and garbage (overwritten
        # objects) has SeaweedFS compact volumes in the background, on the cores we measure.
        shutil.rmtree(self.s3.data_dir, ignore_errors=True)
        step("SeaweedFS (S3)", self.s3.start)

    def __enter__(self) -> BenchStack:
        super().__enter__()
        return self


@dataclass
class WorkflowRun:
    seconds: float
    size_bytes: int
    raw_bytes: int
    steps: dict[str, float] = field(default_factory=dict)  # activity -> seconds
    worker_hwm: int = 0  # VmHWM of the worker process
    tree_peak: int = 0  # sampled RSS of worker + pg_dump and other children


class BenchWorker:
    """One worker subprocess with `overrides`; its VmHWM covers exactly what it ran."""

    def __init__(self, stack: BenchStack, overrides: dict[str, str], name: str = "worker") -> None:
        self.stack = stack
        self.name = name
        self.overrides = overrides
        self.proc: Any = None
        self.client: Client | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[BenchWorker]:
        # A fresh log per worker: spawn_worker finds "worker ready" past the log's old size,
        # counted in bytes but sliced in characters, so a shared log with non-ASCII drifts.
        log = self.stack.home / f"{self.name}.log"
        log.unlink(missing_ok=True)
        self.proc = self.stack.spawn_worker(log, {"METRICS_PORT": "0", **self.overrides})
        try:
            yield self
        finally:
            stop_process(self.proc, timeout=90)

    async def backup(self, project_id: str, fmt: DumpFormat = DumpFormat.CUSTOM) -> WorkflowRun:
        settings = self.stack.settings()
        if self.client is None:
            self.client = await connect_with(settings)
        request = ExportRequest(project_id=project_id, format=fmt, request_id=uuid.uuid4().hex[:16])
        with PeakRss(self.proc.pid) as rss:
            started = time.perf_counter()
            handle = await start_export(self.client, settings, request)
            result: ExportResult = await handle.result()
            seconds = time.perf_counter() - started
        steps = await step_seconds(self.client, handle.id)
        return WorkflowRun(
            seconds, result.size_bytes, result.raw_bytes, steps, vm_hwm(self.proc.pid), rss.peak
        )


async def step_seconds(client: Client, workflow_id: str) -> dict[str, float]:
    """Scheduled → completed per activity, from the workflow's history."""
    scheduled: dict[int, tuple[str, float]] = {}
    steps: dict[str, float] = {}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        at = event.event_time.ToDatetime().timestamp()
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, at)
        elif event.HasField("activity_task_completed_event_attributes"):
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            name, began = scheduled[sid]
            steps[name] = steps.get(name, 0.0) + at - began
    return steps
