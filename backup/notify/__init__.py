"""Notification channels behind one interface; `open_channels` builds the configured ones and
fails at worker start on a channel that lacks its settings."""

from __future__ import annotations

from backup.errors import ConfigurationError
from backup.notify.base import Channel
from backup.notify.console import ConsoleChannel
from backup.notify.email import EmailChannel
from backup.notify.telegram import TelegramChannel
from backup.notify.webhook import WebhookChannel
from backup.settings import Settings

KNOWN = ("console", "email", "webhook", "telegram")
# Delivered by a local activity of the worker running the workflow (patch small-schema): a
# console delivery is a log line on that worker, so the repeat a crash may cause repeats a line.
# The others reach other systems, once per delivery with their idempotency keys: activities.
LOCAL_CHANNELS = frozenset({"console"})


def missing_settings(name: str, settings: Settings) -> list[str]:
    """The settings a channel needs that this deployment lacks (none for an unknown name)."""
    s = settings
    needed: dict[str, dict[str, object]] = {
        "email": {"SMTP_HOST": s.smtp_host},
        "webhook": {"WEBHOOK_URL": s.webhook_url},
        "telegram": {
            "TELEGRAM_BOT_TOKEN": s.telegram_bot_token,
            "TELEGRAM_CHAT_ID": s.telegram_notify_chat_id or s.telegram_chat_id,
        },
    }
    return [setting for setting, value in needed.get(name, {}).items() if not value]


def _not_set(missing: list[str]) -> str:
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"


def open_channel(name: str, settings: Settings) -> Channel:
    s = settings
    if missing := missing_settings(name, s):
        raise ConfigurationError(f"NOTIFY_CHANNELS has {name} but {_not_set(missing)}")
    if name == "console":
        return ConsoleChannel()
    if name == "email":
        assert s.smtp_host is not None
        return EmailChannel(
            host=s.smtp_host,
            port=s.smtp_port,
            sender=s.smtp_from,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            starttls=s.smtp_starttls,
            tls=s.smtp_tls,
            timeout=s.smtp_timeout_seconds,
            default_recipient=s.notify_email_default,
        )
    if name == "webhook":
        assert s.webhook_url is not None
        secret = s.webhook_secret.get_secret_value() if s.webhook_secret else None
        return WebhookChannel(s.webhook_url, secret, s.webhook_timeout_seconds)
    if name == "telegram":
        chat = s.telegram_notify_chat_id or s.telegram_chat_id
        assert s.telegram_bot_token is not None and chat
        return TelegramChannel(
            s.telegram_bot_token.get_secret_value(),
            chat,
            api_url=s.telegram_api_url,
            thread_id=s.telegram_message_thread_id,
        )
    raise ConfigurationError(
        f"NOTIFY_CHANNELS has unknown channel {name!r}; known: {', '.join(KNOWN)}"
    )


def open_channels(settings: Settings) -> list[Channel]:
    return [open_channel(name, settings) for name in settings.notify_channel_names]


def unavailable(name: str, settings: Settings) -> str | None:
    """Why this deployment can not deliver on a channel a run asked for, naming what to
    configure; None when it can."""
    if name in settings.notify_channel_names:
        return None  # its settings were checked when the worker started
    unlisted = f"NOTIFY_CHANNELS ({settings.notify_channels or 'empty'}) does not list it"
    if missing := missing_settings(name, settings):
        return f"{name} is not configured: {_not_set(missing)}, and {unlisted}"
    return f"{name} is not enabled: {unlisted}"


__all__ = ["Channel", "missing_settings", "open_channel", "open_channels", "unavailable"]
