"""Each notification channel against a real receiver: email to an SMTP server (aiosmtpd),
signed webhooks to an HTTP endpoint, Telegram messages to the Bot API stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from backup.errors import NotificationFailed
from backup.notify import open_channel
from backup.settings import Settings
from devstack.ports import free_port
from devstack.receivers import smtp_server, webhook_receiver
from emulators.telegram import FakeTelegramAPI
from tests.notifications import LINK, failed, succeeded

SECRET = "whsec-test-secret"
SMTP_PASSWORD = "smtp-pass-never-logged"


def email_settings(port: int) -> Settings:
    return Settings(
        notify_channels="email",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="backups@platform.example",
        smtp_username=None,
        smtp_password=SMTP_PASSWORD,  # type: ignore[arg-type]
    )


def parts(message: object) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()  # type: ignore[attr-defined]
        for part in message.walk()  # type: ignore[attr-defined]
        if not part.is_multipart()
    }


async def test_success_email_carries_every_field_in_text_and_html() -> None:
    with smtp_server() as (port, inbox):
        await open_channel("email", email_settings(port)).send(succeeded(), LINK)
    [message] = inbox
    assert message["From"] == "backups@platform.example"
    assert message["To"] == "owner@example.com"
    assert message["Subject"] == "Backup of acme succeeded (2.3 MB)"
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    for text in body.values():
        for expected in (
            "acme",
            "2271370",
            "5",
            "custom",
            "1.6 s",
            "s3://backups/acme/x.dump.zst",
            "ab" * 32,
        ):
            assert expected in text, (expected, text)
    assert LINK in body["text/plain"] and f'href="{LINK}"' in body["text/html"]


async def test_failure_email_says_which_step_failed_and_why() -> None:
    with smtp_server() as (port, inbox):
        await open_channel("email", email_settings(port)).send(failed(), LINK)
    [message] = inbox
    assert message["Subject"] == "Backup of acme FAILED during dumping"
    text = parts(message)["text/plain"]
    assert "dumping" in text and "connection refused" in text and LINK in text


async def test_smtp_down_is_a_retryable_failure_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = email_settings(free_port())  # nothing listens there
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as caught:
        await env.run(NotifyActivities(settings).deliver_notification, "email", succeeded())
    assert caught.value.type == "NotificationFailed" and not caught.value.non_retryable
    assert SMTP_PASSWORD not in str(caught.value) and SMTP_PASSWORD not in caplog.text


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The README's recipe, written from the documentation, not from the sender's code."""
    fields = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields["v1"])


def webhook_settings(url: str) -> Settings:
    return Settings(
        notify_channels="webhook",
        webhook_url=url,
        webhook_secret=SECRET,  # type: ignore[arg-type]
    )


async def test_webhook_is_signed_versioned_and_idempotent() -> None:
    with webhook_receiver() as receiver:
        await open_channel("webhook", webhook_settings(receiver.url)).send(succeeded(), LINK)
    [delivery] = receiver.deliveries
    signature = delivery.headers["X-Export-Backup-Signature"]
    assert verify_signature(SECRET, signature, delivery.body)
    assert not verify_signature("another-secret", signature, delivery.body)
    assert not verify_signature(SECRET, signature, delivery.body.replace(b"acme", b"evil"))
    payload = json.loads(delivery.body)
    assert payload["version"] == 1 and payload["event"] == "backup.succeeded"
    assert payload["id"] == delivery.headers["Idempotency-Key"] == "run-1:backup.succeeded"
    assert payload["backup"]["sha256"] == "ab" * 32 and payload["failure"] is None
    assert payload["workflow"]["url"] == LINK and "acme" in payload["text"]


async def test_webhook_5xx_is_retried_with_the_same_key_and_body() -> None:
    with webhook_receiver(statuses=[503]) as receiver:
        channel = open_channel("webhook", webhook_settings(receiver.url))
        with pytest.raises(NotificationFailed) as caught:
            await channel.send(failed(), LINK)
        assert caught.value.retryable
        await channel.send(failed(), LINK)
    first, second = receiver.deliveries
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body
    assert json.loads(second.body)["failure"] == {
        "step": "dumping",
        "error": "pg_dump exited with code 1: connection refused",
        "duration_seconds": 3.0,
    }


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_webhook_4xx_is_not_retried(status: int) -> None:
    with webhook_receiver(statuses=[status]) as receiver:
        env = ActivityEnvironment()
        activities = NotifyActivities(webhook_settings(receiver.url))
        with pytest.raises(ApplicationError) as caught:
            await env.run(activities.deliver_notification, "webhook", succeeded())
    assert caught.value.non_retryable and str(status) in caught.value.message
    assert SECRET not in caught.value.message


async def test_telegram_message_is_short_and_readable() -> None:
    token = "42:notify-token"
    with FakeTelegramAPI(token, {-100}) as api:
        settings = Settings(
            telegram_bot_token=token,  # type: ignore[arg-type]
            telegram_chat_id="-100",
            telegram_api_url=api.base_url,
        )
        await open_channel("telegram", settings).send(failed(), LINK)
        [text] = api.messages.values()
    assert text.startswith("❌ Backup of acme FAILED during dumping")
    assert LINK in text


async def test_telegram_bad_token_is_permanent_and_redacted() -> None:
    with FakeTelegramAPI("42:right-token", {-100}) as api:
        settings = Settings(
            telegram_bot_token="42:wrong-token",  # type: ignore[arg-type]
            telegram_chat_id="-100",
            telegram_api_url=api.base_url,
        )
        with pytest.raises(NotificationFailed) as caught:
            await open_channel("telegram", settings).send(succeeded(), LINK)
    assert not caught.value.retryable and "wrong-token" not in str(caught.value)


@pytest.mark.parametrize(
    ("configured", "requested", "email", "expected"),
    [
        ("console,email,webhook", None, "owner@example.com", ["console", "email", "webhook"]),
        # Email without a recipient and channels the deployment lacks stay in the plan, to be
        # reported as skipped (tests/unit/test_notify_skipped.py).
        ("console,email,webhook", None, None, ["console", "email", "webhook"]),
        ("console,email,webhook", ["email"], "owner@example.com", ["email"]),
        ("console", ["telegram"], None, ["telegram"]),
    ],
)
async def test_channels_follow_deployment_request_and_recipient(
    configured: str, requested: list[str] | None, email: str | None, expected: list[str]
) -> None:
    settings = Settings(notify_channels=configured)
    note = succeeded().model_copy(update={"notify_email": email, "notify_channels": requested})
    chosen = await ActivityEnvironment().run(NotifyActivities(settings).notification_channels, note)
    assert chosen == expected


async def test_a_redelivered_email_has_the_same_message_id() -> None:
    """A crash after the SMTP server accepted the email resends it: mail systems drop the second
    copy by its Message-ID, as webhook receivers do by Idempotency-Key."""
    with smtp_server() as (port, inbox):
        channel = open_channel("email", email_settings(port))
        await channel.send(succeeded(), LINK)
        await channel.send(succeeded(), LINK)
        await channel.send(failed(), LINK)
    first, again, other = inbox
    assert first["Message-ID"] == again["Message-ID"] == "<run-1.backup.succeeded@export-backup>"
    assert other["Message-ID"] != first["Message-ID"]
