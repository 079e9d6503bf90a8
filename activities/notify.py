"""Tell the user how the backup went, on every configured channel.

A channel that fails is recorded, never raised: a failed notification must not fail a good
backup (nor hide a failed one).
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from backup.models import Notification, NotificationOutcome
from backup.notify import open_channels
from backup.settings import Settings

CHANNEL_TIMEOUT_SECONDS = 30.0


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="notify")
    async def notify(self, notification: Notification) -> list[NotificationOutcome]:
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
