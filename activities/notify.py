"""Tell the user how the backup went.

Each channel is delivered by its own activity with a bounded retry policy, so the Web UI shows
one event per channel and a slow or failing channel never holds up another. A channel that still
fails is recorded in the result by the workflow, never raised: a failed notification must not
fail a good backup (nor hide a failed one).
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import count_backup, step_errors
from backup.errors import NotificationSkipped, error_type
from backup.models import Delivery, Notification, NotificationOutcome
from backup.notify import open_channel, open_channels, unavailable
from backup.settings import Settings

CHANNEL_TIMEOUT_SECONDS = 30.0


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="notification_channels")
    async def notification_channels(self, notification: Notification) -> list[str]:
        """The channels this notification is meant for: those the request named, else all of
        NOTIFY_CHANNELS. A channel the deployment can not serve, and email without a recipient,
        stay in the list: deliver_notification_v2 reports them as NotificationSkipped with what to
        configure, so the result names them instead of dropping them silently."""
        count_backup(notification.project_id, notification.event.value)
        names = self._settings.notify_channel_names
        if notification.notify_channels is None:
            return names
        requested: list[str] = list(notification.notify_channels)
        return list(dict.fromkeys([n for n in names if n in requested] + requested))

    def skip_reason(self, channel: str, notification: Notification) -> str | None:
        if reason := unavailable(channel, self._settings):
            return reason
        if channel == "email" and not (
            notification.notify_email or self._settings.notify_email_default
        ):
            return "email has no recipient: pass notify_email or set NOTIFY_EMAIL_DEFAULT"
        return None

    @activity.defn(name="deliver_notification")
    async def deliver_notification(self, channel: str, notification: Notification) -> None:
        """What runs started before deliver_notification_v2 scheduled (patch store-step)."""
        await self.deliver_notification_v2(Delivery(channel=channel, notification=notification))

    @activity.defn(name="deliver_notification_v2")
    async def deliver_notification_v2(self, delivery: Delivery) -> None:
        channel, notification = delivery.channel, delivery.notification
        if reason := self.skip_reason(channel, notification):
            # Not a failure of the channel (not counted as one, so not through step_errors);
            # never retried. The workflow records it as "skipped", the message as the reason.
            raise ApplicationError(reason, type=error_type(NotificationSkipped), non_retryable=True)
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
        (replay of their histories schedules it); new runs use deliver_notification_v2."""
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
