"""The one Bot API client (storage and notifications) against the Bot API stand-in: 429s are
waited out exactly as long as Telegram asks, within the caller's budget; past it the call fails
at once, retryably; the token never shows in an error."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest

from backup.errors import NotificationFailed
from backup.notify.telegram import TelegramChannel
from backup.telegram_bot import BotApi, BotApiError
from emulators.telegram import FakeTelegramAPI
from tests.notifications import LINK, succeeded

TOKEN = "123456789:AAFakeTokenForTheBotClientTests_x1"
CHAT = -1001234567890


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI(TOKEN, {CHAT}) as fake:
        yield fake


async def test_a_429_is_waited_out_for_retry_after_then_the_call_goes_through(
    telegram: FakeTelegramAPI,
) -> None:
    telegram.rate_limit_next("sendMessage", retry_after=1, times=2)
    answers = []
    async with BotApi(TOKEN, telegram.base_url, max_wait=5) as bot:
        message = await bot.call(
            "sendMessage", chat_id=CHAT, text="hi", on_answer=lambda: answers.append(1)
        )
    assert telegram.messages[message["message_id"]] == "hi"
    waits = telegram.waits_after_rate_limit("sendMessage")
    assert len(waits) == 2 and min(waits) >= 1.0
    assert len(answers) == 3  # two 429s and the answer


async def test_a_wait_past_the_budget_fails_at_once_and_retryably(
    telegram: FakeTelegramAPI,
) -> None:
    telegram.rate_limit_next("sendMessage", retry_after=30)
    started = time.monotonic()
    async with BotApi(TOKEN, telegram.base_url, max_wait=5) as bot:
        with pytest.raises(BotApiError) as caught:
            await bot.call("sendMessage", chat_id=CHAT, text="hi")
    assert time.monotonic() - started < 5  # did not sleep the 30 s
    assert caught.value.status == 429 and caught.value.retryable
    assert "retry after 30" in str(caught.value)
    assert not telegram.messages


async def test_errors_are_classified_and_never_carry_the_token(telegram: FakeTelegramAPI) -> None:
    async with BotApi(TOKEN, telegram.base_url) as bot:
        with pytest.raises(BotApiError) as caught:
            await bot.call("sendMessage", chat_id=-42, text="hi")
        assert caught.value.status == 400 and not caught.value.retryable
        assert "chat not found" in caught.value.description
        telegram.fail_next("sendMessage", status=502)
        with pytest.raises(BotApiError) as caught:
            await bot.call("sendMessage", chat_id=CHAT, text="hi")
        assert caught.value.status == 502 and caught.value.retryable
    async with BotApi("1:wrong", telegram.base_url) as bot:
        with pytest.raises(BotApiError) as caught:
            await bot.call("getMe")
    assert caught.value.status == 401 and not caught.value.retryable
    assert "1:wrong" not in str(caught.value) and caught.value.__context__ is None


async def test_a_download_waits_out_a_429_too(telegram: FakeTelegramAPI) -> None:
    async with BotApi(TOKEN, telegram.base_url, max_wait=5) as bot:
        sent = await bot.call(
            "sendDocument", chat_id=CHAT, files={"document": ("a.bin", b"x" * 1000)}
        )
        info = await bot.call("getFile", file_id=sent["document"]["file_id"])
        telegram.rate_limit_next("download", retry_after=1)
        out = io.BytesIO()
        length, _ = await bot.download(info["file_path"], out)
    assert length == 1000 and out.getvalue() == b"x" * 1000
    assert min(telegram.waits_after_rate_limit("download")) >= 1.0


async def test_notifications_share_the_policy(telegram: FakeTelegramAPI) -> None:
    """Before the one client, a 429 failed the notification; now it is waited out."""
    channel = TelegramChannel(TOKEN, str(CHAT), api_url=telegram.base_url)
    telegram.rate_limit_next("sendMessage", retry_after=1)
    await channel.send(succeeded(), LINK)
    assert len(telegram.messages) == 1
    telegram.rate_limit_next("sendMessage", retry_after=600)
    with pytest.raises(NotificationFailed) as caught:
        await channel.send(succeeded(), LINK)
    assert caught.value.retryable and TOKEN not in str(caught.value)
