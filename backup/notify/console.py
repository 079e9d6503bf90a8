"""Console channel: a log line on the worker, for the dev stack and as a last resort."""

from __future__ import annotations

import logging

from backup.models import Notification
from backup.notify.render import short_text

logger = logging.getLogger("export_backup.notify")


class ConsoleChannel:
    name = "console"

    async def send(self, notification: Notification, link: str | None = None) -> None:
        logger.info(short_text(notification, link).replace("\n", " "))
