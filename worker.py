"""Run an export-backup worker: `python worker.py` (configuration from the environment).

Each worker polls two task queues: the shared one (workflows, validation, host claims and
notifications) and its host's own queue (dump, store, test restore, cleanup of its spool).
SIGTERM/SIGINT stop polling and give running activities SHUTDOWN_GRACE_SECONDS to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.cleanup import CleanupActivities
from activities.dump import DumpActivities
from activities.fleet import FleetActivities
from activities.hosts import HostActivities
from activities.notify import NotifyActivities
from activities.projects import ProjectActivities
from activities.restore import RestoreActivities
from activities.retention import RetentionActivities
from activities.small import SmallBackupActivities
from activities.store import StoreActivities
from activities.support import STEP_SECONDS, STEP_SECONDS_BUCKETS
from activities.upload import UploadActivities
from activities.verify import VerifyActivities
from activities.verify_restore import VerifyRestoreActivities
from backup.encryption import parse_recipients
from backup.errors import ConfigurationError
from backup.notify import open_channels
from backup.pgdump import pg_bin_dir
from backup.projects import close_kept_connections
from backup.settings import Settings
from backup.spool import sweep_stale
from backup.storage import open_storage, sweep_abandoned_uploads
from backup.storage.s3_client import close_shared_clients
from client import connect_with, ensure_search_attributes, exit_without_finalizing
from workflows.export_backup import ExportBackupWorkflow
from workflows.fleet import BackupAllProjectsWorkflow
from workflows.restore_backup import RestoreBackupWorkflow

logger = logging.getLogger("export_backup.worker")


def check_configuration(settings: Settings) -> None:
    """Fail at start, not in the middle of the first backup."""
    open_storage(settings)
    open_channels(settings)
    pg_bin_dir(settings.pg_bin_dir)
    for keys in [settings.deployment_recipients, *settings.encryption_project_recipients.values()]:
        if keys:
            parse_recipients(keys)  # fail closed at start on a bad age key
    settings.spool_dir.mkdir(parents=True, exist_ok=True)


# With WORKFLOW_SANDBOX: modules a workflow run uses but need not import afresh. The sandbox
# re-executes every other module of a workflow file for each new run (compiling it from source
# when, as in the Dockerfile, PYTHONDONTWRITEBYTECODE is set). These hold no state a run
# changes: immutable policies and models, and activity classes the workflow only names. `from
# workflows import policies` bypasses `imports_passed_through()`, so the restrictions name them.
PASSTHROUGH_MODULES = (
    "activities",
    "backup",
    "pydantic",
    "pydantic_core",
    "workflows.activity_calls",
    "workflows.export_notify",
    "workflows.export_patches",
    "workflows.export_steps",
    "workflows.failures",
    "workflows.inputs",
    "workflows.policies",
    "workflows.search_attributes",
)


def workflow_runner_default(settings: Settings) -> WorkflowRunner:
    if not settings.workflow_sandbox:
        return UnsandboxedWorkflowRunner()
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_workers(
    client: Client,
    settings: Settings,
    interceptors: Sequence[Interceptor] = (),
    workflow_runner: WorkflowRunner | None = None,
) -> list[Worker]:
    """`interceptors` and `workflow_runner` let a harness (reliability/crashy_worker.py) observe
    the real workers and patch workflows.policies."""
    grace = timedelta(seconds=settings.shutdown_grace_seconds)
    notify = NotifyActivities(settings)
    restore = RestoreActivities(settings)
    fleet = FleetActivities(settings)
    shared = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[ExportBackupWorkflow, RestoreBackupWorkflow, BackupAllProjectsWorkflow],
        activities=[
            ProjectActivities(settings).validate_project,
            fleet.list_active_projects,
            fleet.list_active_projects_v2,
            HostActivities(settings).claim_host,
            notify.notification_channels,
            notify.deliver_notification,
            notify.deliver_notification_v2,
            notify.notify,
            restore.restore_backup,
            restore.swap_in_restored_schema,
            restore.swap_in_restored_schema_v2,
            restore.drop_restored_schema,
            restore.drop_restore_leftovers,
            RetentionActivities(settings).apply_retention,
            # A local activity (patch small-schema): the workflow's own worker runs it.
            SmallBackupActivities(settings).back_up_small_schema,
        ],
        graceful_shutdown_timeout=grace,
        # A cancelled restore learns it from a heartbeat's answer: within seconds, not 48 s.
        max_heartbeat_throttle_interval=timedelta(seconds=2),
        interceptors=interceptors,
        workflow_runner=workflow_runner or workflow_runner_default(settings),
    )
    verify_restore = VerifyRestoreActivities(settings)
    cleanup = CleanupActivities(settings)
    pinned = Worker(
        client,
        task_queue=settings.host_task_queue,
        # The multi-argument names (verify_restore, upload_artifact, cleanup_spool) and the
        # separate verify and upload steps serve runs started before the store-step patch.
        activities=[
            DumpActivities(settings).dump_schema,
            StoreActivities(settings).store_artifact,
            VerifyActivities(settings).verify_artifact,
            verify_restore.verify_restore,
            verify_restore.verify_restore_v2,
            UploadActivities(settings).upload_artifact,
            cleanup.cleanup_spool,
            cleanup.cleanup_spool_v2,
        ],
        # Every activity is async: their blocking work runs in threads of its own
        # (activities.support.Blocking), so no activity executor; this bounds how many run.
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=grace,
        interceptors=interceptors,
    )
    return [shared, pinned]


def metrics_runtime(settings: Settings) -> Runtime | None:
    if not settings.metrics_port:
        return None
    address = f"{settings.metrics_host}:{settings.metrics_port}"
    # The SDK's default buckets (50 ... 10000) suit milliseconds, not step durations.
    buckets = {STEP_SECONDS: STEP_SECONDS_BUCKETS}
    metrics = PrometheusConfig(bind_address=address, histogram_bucket_overrides=buckets)
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


async def run(
    settings: Settings,
    interceptors: Sequence[Interceptor] = (),
    workflow_runner: WorkflowRunner | None = None,
) -> None:
    check_configuration(settings)
    swept = sweep_stale(settings.spool_dir, settings.spool_max_age_hours)
    if swept:
        logger.info("removed %d stale spool directories", len(swept))
    await sweep_abandoned_uploads(settings)  # S3 only; never stops the start
    client = await connect_with(settings, metrics_runtime(settings))
    added = await ensure_search_attributes(client)
    if added:
        logger.info("registered search attributes %s", ", ".join(added))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    workers = build_workers(client, settings, interceptors, workflow_runner)
    runs = [asyncio.create_task(w.run()) for w in workers]
    logger.info(
        "worker ready: queues %s and %s, metrics on %s",
        settings.temporal_task_queue,
        settings.host_task_queue,
        f"{settings.metrics_host}:{settings.metrics_port}" if settings.metrics_port else "off",
    )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
    logger.info("shutting down; running activities get %ss", settings.shutdown_grace_seconds)
    # shutdown() is safe before run() has started, so a signal during start-up is not lost.
    await asyncio.gather(*(w.shutdown() for w in workers))
    results = await asyncio.gather(*runs, return_exceptions=True)
    stopped.cancel()
    await close_shared_clients()
    await close_kept_connections()
    # A worker that died on its own (not by signal) makes the process fail.
    for result in results:
        if isinstance(result, BaseException):
            raise result


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run(Settings.from_environment()))
    except ConfigurationError as err:
        print(f"export-backup worker: configuration error: {err}", file=sys.stderr)
        exit_without_finalizing(1)
    exit_without_finalizing(0)  # every worker has shut down


if __name__ == "__main__":
    main()
