"""Tell the user how the backup went.

Each channel is delivered by its own activity with a bounded retry policy, so the Web UI shows
one event per channel and a slow or failing channel never holds up another. A channel that still
fails is recorded in the result by the workflow, never raised: a failed notification must not
fail a good backup (nor hide a failed one).
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.support import step_errors
from backup.models import Notification, NotificationOutcome
from backup.notify import open_channel, open_channels
from backup.settings import Settings

CHANNEL_TIMEOUT_SECONDS = 30.0


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="notification_channels")
    async def notification_channels(self, notification: Notification) -> list[str]:
        """The configured channels this notification goes to: those the request asked for
        (all when it named none), and email only when there is a recipient."""
        s = self._settings
        names = s.notify_channel_names
        if notification.notify_channels is not None:
            names = [n for n in names if n in notification.notify_channels]
        if not (notification.notify_email or s.notify_email_default):
            names = [n for n in names if n != "email"]
        return names

    @activity.defn(name="deliver_notification")
    async def deliver_notification(self, channel: str, notification: Notification) -> None:
        with step_errors(f"notify_{channel}"):
            await open_channel(channel, self._settings).send(notification, self._link(notification))

    def _link(self, n: Notification) -> str:
        namespace = activity.info().workflow_namespace
        return (
            f"{self._settings.temporal_ui_url}/namespaces/{namespace}/workflows/"
            f"{n.workflow_id}/{n.run_id}/history"
        )

    @activity.defn(name="notify")
    async def notify(self, notification: Notification) -> list[NotificationOutcome]:
        """All channels in one activity: kept for runs started before per-channel delivery
        (replay of their histories schedules it); new runs use deliver_notification."""
        outcomes = []
        for channel in open_channels(self._settings):
            try:
                await asyncio.wait_for(channel.send(notification), CHANNEL_TIMEOUT_SECONDS)
                outcomes.append(NotificationOutcome(channel=channel.name, status="sent"))
            except Exception as err:
                activity.logger.warning("notification via %s failed: %s", channel.name, err)
                outcomes.append(
                    NotificationOutcome(channel=channel.name, status="failed", error=str(err))
                )
        return outcomes
