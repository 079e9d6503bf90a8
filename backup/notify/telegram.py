"""A short Telegram message through the Bot API; the token is redacted from every error."""

from __future__ import annotations

import httpx

from backup.errors import NotificationFailed
from backup.models import Notification
from backup.notify.render import short_text
from backup.storage.telegram import redact_token


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
        failure = await self._post(data)
        # Raised outside any except block: httpx's error (its request holds the URL with the
        # token) must not ride along as the cause or context.
        if failure is not None:
            raise failure

    async def _post(self, data: dict[str, str]) -> NotificationFailed | None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    f"{self.api_url}/bot{self._token}/sendMessage", data=data
                )
        except httpx.HTTPError as err:
            return NotificationFailed(self._redact(f"Telegram sendMessage: {err!r}"))
        except Exception as err:  # a URL httpx cannot use: the settings need a person
            return NotificationFailed(
                self._redact(f"Telegram sendMessage: {err!r}: check TELEGRAM_API_URL"),
                retryable=False,
            )
        if response.is_success:
            return None
        try:
            description = str(response.json().get("description", ""))
        except ValueError:
            description = response.text[:200]
        status = response.status_code
        return NotificationFailed(
            self._redact(f"Telegram sendMessage: {status} {description}"),
            retryable=status >= 500 or status == 429,
        )

    def _redact(self, text: str) -> str:
        return redact_token(text, self._token)
