"""The notification interface every channel (console, email, webhook, Telegram) implements."""

from __future__ import annotations

from typing import Protocol

from backup.models import Notification


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver or raise; the caller records failures and never fails the backup for them."""
        ...


def summary_line(n: Notification, ui_url: str | None = None) -> str:
    """One human line per event, shared by the text channels."""
    if n.event == "backup.succeeded":
        line = (
            f"Backup of project {n.project_id} succeeded: {n.size_bytes} bytes, "
            f"{n.table_count} tables, {n.format} in {n.duration_seconds}s at {n.location} "
            f"(sha256 {n.sha256})"
        )
    else:
        line = f"Backup of project {n.project_id} FAILED at step {n.failed_step}: {n.error}"
    if ui_url:
        line += f" — {ui_url}"
    return line
