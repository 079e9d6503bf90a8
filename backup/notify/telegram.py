"""A short Telegram message through the Bot API; the token is redacted from every error."""

from __future__ import annotations

import httpx

from backup.errors import NotificationFailed
from backup.models import Notification
from backup.notify.render import short_text


class TelegramChannel:
    name = "telegram"

    def __init__(self, token: str, chat_id: str, *, api_url: str, thread_id: int | None = None,
                 timeout: float = 30.0) -> None:  # fmt: skip
        self._token = token
        self.chat_id, self.api_url, self.thread_id = chat_id, api_url.rstrip("/"), thread_id
        self.timeout = timeout

    async def send(self, notification: Notification, link: str | None = None) -> None:
        data: dict[str, str] = {"chat_id": self.chat_id, "text": short_text(notification, link)}
        if self.thread_id is not None:
            data["message_thread_id"] = str(self.thread_id)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    f"{self.api_url}/bot{self._token}/sendMessage", data=data
                )
        except httpx.HTTPError as err:
            raise NotificationFailed(self._redact(f"Telegram sendMessage: {err!r}")) from None
        if response.is_success:
            return
        try:
            description = str(response.json().get("description", ""))
        except ValueError:
            description = response.text[:200]
        status = response.status_code
        raise NotificationFailed(
            self._redact(f"Telegram sendMessage: {status} {description}"),
            retryable=status >= 500 or status == 429,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<TELEGRAM_BOT_TOKEN>")
