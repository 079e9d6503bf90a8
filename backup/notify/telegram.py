"""A short Telegram message through the Bot API (backup.telegram_bot: one 429 policy, the token
redacted from every error)."""

from __future__ import annotations

from backup.errors import NotificationFailed
from backup.models import Notification
from backup.notify.render import short_text
from backup.telegram_bot import BotApi, BotApiError

# 429 waits per message: the delivery activity has a minute (workflows.policies.DELIVER).
MAX_RATE_LIMIT_WAIT = 20.0


class TelegramChannel:
    name = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        api_url: str,
        thread_id: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._token = token
        self.chat_id, self.api_url, self.thread_id = chat_id, api_url.rstrip("/"), thread_id
        self.timeout = timeout

    async def send(self, notification: Notification, link: str | None = None) -> None:
        failure = None
        try:
            async with BotApi(
                self._token, self.api_url, timeout=self.timeout, max_wait=MAX_RATE_LIMIT_WAIT
            ) as bot:
                await bot.call(
                    "sendMessage",
                    chat_id=self.chat_id,
                    text=short_text(notification, link),
                    message_thread_id=self.thread_id,
                )
        except BotApiError as err:
            failure = NotificationFailed(str(err), retryable=err.retryable)
        # Raised outside the except block: nothing of httpx rides along as the context.
        if failure is not None:
            raise failure
