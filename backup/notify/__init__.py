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


def open_channel(name: str, settings: Settings) -> Channel:
    s = settings
    if name == "console":
        return ConsoleChannel()
    if name == "email":
        if not s.smtp_host:
            raise ConfigurationError("NOTIFY_CHANNELS has email but SMTP_HOST is not set")
        return EmailChannel(
            host=s.smtp_host, port=s.smtp_port, sender=s.smtp_from, username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            starttls=s.smtp_starttls, tls=s.smtp_tls, timeout=s.smtp_timeout_seconds,
            default_recipient=s.notify_email_default,
        )  # fmt: skip
    if name == "webhook":
        if not s.webhook_url:
            raise ConfigurationError("NOTIFY_CHANNELS has webhook but WEBHOOK_URL is not set")
        secret = s.webhook_secret.get_secret_value() if s.webhook_secret else None
        return WebhookChannel(s.webhook_url, secret, s.webhook_timeout_seconds)
    if name == "telegram":
        chat = s.telegram_notify_chat_id or s.telegram_chat_id
        if s.telegram_bot_token is None or not chat:
            raise ConfigurationError(
                "NOTIFY_CHANNELS has telegram but TELEGRAM_BOT_TOKEN or TELEGRAM_CHAT_ID is not set"
            )
        return TelegramChannel(
            s.telegram_bot_token.get_secret_value(), chat, api_url=s.telegram_api_url,
            thread_id=s.telegram_message_thread_id,
        )  # fmt: skip
    raise ConfigurationError(
        f"NOTIFY_CHANNELS has unknown channel {name!r}; known: console, email, webhook, telegram"
    )


def open_channels(settings: Settings) -> list[Channel]:
    return [open_channel(name, settings) for name in settings.notify_channel_names]


__all__ = ["Channel", "open_channel", "open_channels"]
