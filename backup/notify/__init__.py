"""Notification channels behind one interface; `open_channels` builds the configured ones."""

from __future__ import annotations

from backup.errors import ConfigurationError
from backup.notify.base import Channel
from backup.notify.console import ConsoleChannel
from backup.settings import Settings


def open_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    for name in settings.notify_channel_names:
        if name == "console":
            channels.append(ConsoleChannel())
        else:
            raise ConfigurationError(
                f"NOTIFY_CHANNELS contains unknown channel {name!r}; known: console"
            )
    return channels


__all__ = ["Channel", "open_channels"]
