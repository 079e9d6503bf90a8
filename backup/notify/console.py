"""Console channel: a log line on the worker, for the dev stack and as a last resort."""

from __future__ import annotations

import logging

from backup.models import Notification
from backup.notify.base import summary_line

logger = logging.getLogger("export_backup.notify")


class ConsoleChannel:
    name = "console"

    async def send(self, notification: Notification) -> None:
        logger.info(summary_line(notification))
