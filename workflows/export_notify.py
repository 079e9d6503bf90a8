"""ExportBackupWorkflow's notifications: one activity per channel, each under its own bounded
retry policy, and whatever happens recorded in the result, never the backup's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

from activities.notify import NotifyActivities
from backup.errors import NotificationSkipped, error_type
from backup.models import (
    BackupEvent,
    Delivery,
    ExportRequest,
    Notification,
    NotificationOutcome,
)
from backup.notify import LOCAL_CHANNELS
from workflows import policies
from workflows.activity_calls import call_activity
from workflows.export_patches import ExportPatches
from workflows.failures import root_message, root_type


async def notify(
    req: ExportRequest,
    event: BackupEvent,
    outcome: dict[str, Any],
    patches: ExportPatches,
    show: Callable[[], None],
) -> list[NotificationOutcome]:
    """Tell of `event` with `outcome` (Notification's fields); `show` is called before the
    deliveries are awaited."""
    info = workflow.info()
    notification = Notification(
        event=event,
        project_id=req.project_id,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        notify_email=req.notify_email,
        notify_channels=req.notify_channels,
        occurred_at=workflow.now(),
        format=req.format,
        **outcome,
    )
    if not patches.per_channel_notify():
        return await _all_at_once(notification)
    try:
        channels = await call_activity(
            NotifyActivities.notification_channels,
            policies.PLAN_NOTIFY,
            f"Choose channels for {notification.event}",
            notification,
            local=patches.local_steps,  # older runs replay regular activities
        )
    except FailureError as err:  # as in _deliver: recorded, never the backup's outcome
        return [NotificationOutcome(channel="*", status="failed", error=root_message(err))]
    local = {c for c in channels if patches.small_schema and c in LOCAL_CHANNELS}
    if set(channels) - local:  # the run is about to wait for a regular activity
        show()
    deliveries = (_deliver(c, notification, patches.store_step, c in local) for c in channels)
    return list(await asyncio.gather(*deliveries))


async def _deliver(
    channel: str, notification: Notification, typed: bool, local: bool
) -> NotificationOutcome:
    summary = f"Notify via {channel}: {notification.event}"
    try:
        if typed:
            await call_activity(
                NotifyActivities.deliver_notification_v2,
                policies.DELIVER,
                summary,
                Delivery(channel=channel, notification=notification),
                local=local,
            )
        else:
            await call_activity(
                NotifyActivities.deliver_notification,
                policies.DELIVER,
                summary,
                channel,
                notification,
            )
    except FailureError as err:  # ActivityError, or a local activity's bare failure
        # Never let a notification decide the outcome of a backup: record it. A channel this
        # deployment can not serve is skipped; the error says what to configure.
        skipped = root_type(err) == error_type(NotificationSkipped)
        status = "skipped" if skipped else "failed"
        return NotificationOutcome(channel=channel, status=status, error=root_message(err))
    return NotificationOutcome(channel=channel, status="sent")


async def _all_at_once(notification: Notification) -> list[NotificationOutcome]:
    """Runs started before per-channel delivery replay through this path."""
    try:
        return await call_activity(
            NotifyActivities.notify,
            policies.NOTIFY,
            f"Notify: {notification.event}",
            notification,
        )
    except ActivityError as err:
        return [NotificationOutcome(channel="*", status="failed", error=root_message(err))]
