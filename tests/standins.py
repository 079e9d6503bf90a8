"""Stand-in activities with the real activity names, and a harness to run the workflow."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from backup.models import (
    CleanupRequest,
    Delivery,
    DumpedArtifact,
    DumpSpec,
    ExportResult,
    Notification,
    NotificationOutcome,
    Project,
    RestoreCheck,
    StoredArtifact,
    StoreRequest,
    VerifyRestoreRequest,
)
from backup.retention import RetentionOutcome
from workflows.export_backup import ExportBackupWorkflow

HOST_A = "host-a"
# The stand-in plan sends every notification to these two channels, concurrently.
DELIVERIES = {"deliver_notification:console", "deliver_notification:webhook"}


@dataclass
class StandIns:
    """Stand-in activities with the real names; each records its calls and can be told to fail."""

    host_queues: list[str]
    calls: list[str] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    failures: dict[str, Callable[[int], None]] = field(default_factory=dict)
    dump_started: asyncio.Event = field(default_factory=asyncio.Event)
    block_dump: bool = False
    store_started: asyncio.Event = field(default_factory=asyncio.Event)
    block_store: bool = False
    restore_check: RestoreCheck = field(
        default_factory=lambda: RestoreCheck(
            verified=True, tables_expected=3, tables_restored=3, seconds=0.1
        )
    )

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failures:
            self.failures[name](self.calls.count(name))

    @activity.defn(name="validate_project")
    async def validate_project(self, project_id: str) -> Project:
        self._enter("validate_project")
        return Project(project_id=project_id, name="Acme", schema_name=project_id)

    @activity.defn(name="claim_host")
    async def claim_host(self) -> str:
        self._enter("claim_host")
        return self.host_queues[min(self.calls.count("claim_host"), len(self.host_queues)) - 1]

    @activity.defn(name="dump_schema")
    async def dump_schema(self, spec: DumpSpec) -> DumpedArtifact:
        self._enter("dump_schema")
        self.dump_started.set()
        done = 0
        while self.block_dump:  # heartbeats like the real dump: bytes written so far
            done += 64 * 1024
            activity.heartbeat({"step": "dumping", "bytes": done, "total_bytes": None})
            await asyncio.sleep(0.1)
        return DumpedArtifact(
            host_queue=activity.info().task_queue,
            artifact_path=f"/spool/{spec.run_key}/a.dump.zst",
            manifest_path=f"/spool/{spec.run_key}/a.manifest.json",
            file_name="a.dump.zst",
            size_bytes=100,
            raw_bytes=400,
            sha256="ab" * 32,
            table_count=3,
            dump_seconds=1.0,
        )

    @activity.defn(name="verify_artifact")
    async def verify_artifact(self, artifact: DumpedArtifact) -> None:
        self._enter("verify_artifact")

    @activity.defn(name="verify_restore")
    async def verify_restore(self, artifact: DumpedArtifact, run_key: str) -> RestoreCheck:
        self._enter("verify_restore")
        return self.restore_check

    @activity.defn(name="upload_artifact")
    async def upload_artifact(self, artifact: DumpedArtifact, key_stem: str) -> StoredArtifact:
        self._enter("upload_artifact")
        return StoredArtifact(
            location=f"file:///backups/{key_stem}.dump.zst",
            manifest_location=f"file:///backups/{key_stem}.manifest.json",
            upload_seconds=0.5,
        )

    @activity.defn(name="cleanup_spool")
    async def cleanup_spool(self, run_key: str, key_stem: str | None = None) -> bool:
        self._enter(f"cleanup_spool@{activity.info().task_queue}")
        return True

    # The one-input-model activities new runs schedule (patch store-step), recorded under the
    # names of the steps they stand for, so the step's failures apply to both.
    @activity.defn(name="store_artifact")
    async def store_artifact(self, request: StoreRequest) -> StoredArtifact:
        self._enter("store_artifact")
        self.store_started.set()
        while self.block_store:  # heartbeats like the real upload, until cancelled
            activity.heartbeat({"step": "uploading", "bytes": 0, "total_bytes": 100})
            await asyncio.sleep(0.1)
        return StoredArtifact(
            location=f"file:///backups/{request.key_stem}.dump.zst",
            manifest_location=f"file:///backups/{request.key_stem}.manifest.json",
            upload_seconds=0.5,
        )

    @activity.defn(name="verify_restore_v2")
    async def verify_restore_v2(self, request: VerifyRestoreRequest) -> RestoreCheck:
        self._enter("verify_restore")
        return self.restore_check

    @activity.defn(name="cleanup_spool_v2")
    async def cleanup_spool_v2(self, request: CleanupRequest) -> bool:
        self._enter(f"cleanup_spool@{activity.info().task_queue}")
        return True

    @activity.defn(name="deliver_notification_v2")
    async def deliver_notification_v2(self, delivery: Delivery) -> None:
        self._enter(f"deliver_notification:{delivery.channel}")
        self.notifications.append(delivery.notification)

    @activity.defn(name="apply_retention")
    async def apply_retention(self, project_id: str) -> RetentionOutcome:
        self._enter("apply_retention")
        return RetentionOutcome(project_id=project_id, policy="keep last 3", kept=["file:///k"])

    @activity.defn(name="notify")
    async def notify(self, notification: Notification) -> list[NotificationOutcome]:
        self._enter("notify")
        self.notifications.append(notification)
        return [NotificationOutcome(channel="console", status="sent")]

    @activity.defn(name="notification_channels")
    async def notification_channels(self, notification: Notification) -> list[str]:
        self._enter("notification_channels")
        return ["console", "webhook"]

    @activity.defn(name="deliver_notification")
    async def deliver_notification(self, channel: str, notification: Notification) -> None:
        self._enter(f"deliver_notification:{channel}")
        self.notifications.append(notification)

    def shared(self) -> list[Callable[..., Any]]:
        return [
            self.validate_project,
            self.claim_host,
            self.notify,
            self.notification_channels,
            self.deliver_notification,
            self.deliver_notification_v2,
            self.apply_retention,
        ]

    def pinned(self) -> list[Callable[..., Any]]:
        return [
            self.dump_schema,
            self.verify_artifact,
            self.verify_restore,
            self.upload_artifact,
            self.cleanup_spool,
            self.store_artifact,
            self.verify_restore_v2,
            self.cleanup_spool_v2,
        ]


def fail_with(error_type: str, *, non_retryable: bool, times: int = 1000) -> Callable[[int], None]:
    def fail(attempt: int) -> None:
        if attempt <= times:
            raise ApplicationError(
                f"{error_type} on purpose", type=error_type, non_retryable=non_retryable
            )

    return fail


class Harness:
    def __init__(self, env: WorkflowEnvironment, task_queue: str, fakes: StandIns) -> None:
        self.env, self.task_queue, self.fakes = env, task_queue, fakes
        self.unsandboxed = False

    def workers(self, hosts: list[str]) -> list[Worker]:
        shared = Worker(
            self.env.client,
            task_queue=self.task_queue,
            workflows=[ExportBackupWorkflow],
            activities=self.fakes.shared(),
            # Unsandboxed only when a test patches workflows.policies: the sandbox re-imports it.
            workflow_runner=UnsandboxedWorkflowRunner()
            if self.unsandboxed
            else SandboxedWorkflowRunner(),
        )
        # Heartbeats reach the server at most every second (not 0.8 x the policy's one-minute
        # heartbeat timeout), so a cancellation reaches a blocked stand-in at once.
        pinned = [
            Worker(
                self.env.client,
                task_queue=h,
                activities=self.fakes.pinned(),
                max_heartbeat_throttle_interval=timedelta(seconds=1),
            )
            for h in hosts
        ]
        return [shared, *pinned]

    async def start(self, request: Any) -> WorkflowHandle[Any, ExportResult]:
        return await self.env.client.start_workflow(
            ExportBackupWorkflow.run,
            request,
            id=f"export-backup-test-{uuid.uuid4().hex[:8]}",
            task_queue=self.task_queue,
        )


@contextlib.asynccontextmanager
async def running(workers: list[Worker]) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


async def run_with_workers(h: Harness, hosts: list[str], request: Any) -> ExportResult:
    async with running(h.workers(hosts)):
        handle = await h.start(request)
        return await handle.result()


def harness(
    env: WorkflowEnvironment, task_queue: str, host_queues: list[str] | None = None
) -> Harness:
    queues = [f"{task_queue}@{q}" for q in (host_queues or [HOST_A])]
    return Harness(env, task_queue, StandIns(host_queues=queues))
