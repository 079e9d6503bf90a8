"""The notification interface every channel (console, email, webhook, Telegram) implements."""

from __future__ import annotations

from typing import Protocol

from backup.models import Notification


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification, link: str | None = None) -> None:
        """Deliver or raise NotificationFailed; `link` opens the workflow in the Web UI. The
        caller records failures and never fails the backup for them."""
        ...
