"""The real notification activities inside ExportBackupWorkflow (the other steps are stand-ins),
on the time-skipping server, so Temporal's retry policy for deliveries (policies.DELIVER) is the
one under test: a server that stays down is retried, then recorded, and the backup succeeds; a
webhook answering 5xx is retried with the same Idempotency-Key and body, a 4xx is delivered once;
a channel the deployment can not serve is reported, not dropped."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.notify import NotifyActivities
from backup.errors import NotificationSkipped, error_type
from backup.models import ExportResult, NotificationOutcome
from backup.settings import Settings
from devstack.ports import free_port
from devstack.receivers import webhook_receiver
from tests.notifications import succeeded
from tests.standins import Harness, harness, running
from workflows import policies

SECRET = "whsec-workflow-test"


def with_real_notify(h: Harness, settings: Settings) -> Harness:
    """The harness's workers with the real notification_channels and deliver_notification_v2
    (what new runs schedule, patch store-step)."""
    real, fakes = NotifyActivities(settings), h.fakes
    fakes.shared = lambda: [  # type: ignore[method-assign]
        fakes.validate_project,
        fakes.claim_host,
        fakes.notify,
        real.notification_channels,
        real.deliver_notification_v2,
        fakes.apply_retention,
    ]
    return h


async def run(h: Harness, request: dict[str, Any]) -> tuple[ExportResult, WorkflowHandle[Any, Any]]:
    async with running(h.workers(h.fakes.host_queues)):
        handle = await h.start({"project_id": "acme", **request})
        return await handle.result(), handle


async def delivery_attempts(handle: WorkflowHandle[Any, Any], channel: str) -> int:
    """Attempts Temporal made for one channel's delivery (history keeps the last start)."""
    channel_of: dict[int, str] = {}
    for event in (await handle.fetch_history()).events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == "deliver_notification_v2":
                delivery = json.loads(scheduled.input.payloads[0].data)
                channel_of[event.event_id] = delivery["channel"]
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if channel_of.get(started.scheduled_event_id) == channel:
                return started.attempt
    raise AssertionError(f"no delivery on {channel} started")


def outcomes(result: ExportResult) -> dict[str, NotificationOutcome]:
    return {n.channel: n for n in result.notifications}


async def test_smtp_down_is_retried_then_recorded_and_the_backup_succeeds(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(
        notify_channels="console,email",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_password="never-shown",  # type: ignore[arg-type]
    )
    h = with_real_notify(harness(time_skipping_env, task_queue), settings)
    result, handle = await run(h, {"notify_email": "owner@example.com"})

    assert result.location, "a failed notification must not fail the backup"
    email = outcomes(result)["email"]
    assert email.status == "failed"
    assert email.error and email.error.startswith(f"SMTP 127.0.0.1:{port}: ")
    assert "never-shown" not in email.error
    assert outcomes(result)["console"].status == "sent"
    attempts = await delivery_attempts(handle, "email")
    assert attempts > 1
    assert attempts == policies.DELIVER.retry.maximum_attempts


async def test_webhook_5xx_is_retried_with_the_same_key_and_body(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    with webhook_receiver(statuses=[503, 500, 502], secret=SECRET) as receiver:
        settings = Settings(
            notify_channels="webhook",
            webhook_url=receiver.url,
            webhook_secret=SECRET,  # type: ignore[arg-type]
        )
        h = with_real_notify(harness(time_skipping_env, task_queue), settings)
        result, handle = await run(h, {})
    assert outcomes(result)["webhook"].status == "sent"
    assert await delivery_attempts(handle, "webhook") == 4
    assert len(receiver.deliveries) == 4
    assert len({d.headers["Idempotency-Key"] for d in receiver.deliveries}) == 1
    assert len({d.body for d in receiver.deliveries}) == 1
    # Each attempt signs with its own time (a receiver refuses stale timestamps, and the retry
    # budget outlasts its tolerance); every signature verifies.
    assert all(d.verified for d in receiver.deliveries)
    key = f"{result.run_id}:backup.succeeded"
    assert json.loads(receiver.deliveries[0].body)["id"] == key
    assert receiver.deliveries[0].headers["Idempotency-Key"] == key


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_webhook_4xx_is_delivered_exactly_once(
    time_skipping_env: WorkflowEnvironment, task_queue: str, status: int
) -> None:
    with webhook_receiver(statuses=[status]) as receiver:
        settings = Settings(notify_channels="webhook", webhook_url=receiver.url)
        h = with_real_notify(harness(time_skipping_env, task_queue), settings)
        result, handle = await run(h, {})
    assert len(receiver.deliveries) == 1
    assert await delivery_attempts(handle, "webhook") == 1
    webhook = outcomes(result)["webhook"]
    assert webhook.status == "failed"
    assert webhook.error == f"webhook http://127.0.0.1:{receiver.port} answered {status}"


# A channel the deployment can not serve, and email without a recipient.

UNSERVED = {
    "telegram": "telegram is not configured: TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are not "
    "set, and NOTIFY_CHANNELS (console,email) does not list it",
    "webhook": "webhook is not configured: WEBHOOK_URL is not set, and NOTIFY_CHANNELS "
    "(console,email) does not list it",
    "email": "email has no recipient: pass notify_email or set NOTIFY_EMAIL_DEFAULT",
}


def unserving_settings() -> Settings:
    return Settings(notify_channels="console,email", smtp_host="127.0.0.1")


@pytest.mark.parametrize("channel", sorted(UNSERVED))
async def test_an_unserved_channel_is_a_permanent_skip_naming_what_to_set(channel: str) -> None:
    note = succeeded().model_copy(update={"notify_email": None, "notify_channels": [channel]})
    activities = NotifyActivities(unserving_settings())
    env = ActivityEnvironment()
    assert await env.run(activities.notification_channels, note) == [channel]
    with pytest.raises(ApplicationError) as caught:
        await env.run(activities.deliver_notification, channel, note)
    assert caught.value.type == error_type(NotificationSkipped) and caught.value.non_retryable
    assert caught.value.message == UNSERVED[channel]


async def test_telegram_in_settings_but_not_in_notify_channels_says_to_enable_it() -> None:
    settings = Settings(
        notify_channels="console",
        telegram_bot_token="1:t",  # type: ignore[arg-type]
        telegram_chat_id="-100",
    )
    note = succeeded().model_copy(update={"notify_channels": ["telegram"]})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            NotifyActivities(settings).deliver_notification, "telegram", note
        )
    expected = "telegram is not enabled: NOTIFY_CHANNELS (console) does not list it"
    assert caught.value.message == expected


async def test_unserved_channels_are_in_the_result_with_the_reason(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = with_real_notify(harness(time_skipping_env, task_queue), unserving_settings())
    result, handle = await run(h, {"notify_channels": ["console", "telegram", "email"]})
    assert result.location
    got = outcomes(result)
    assert set(got) == {"console", "telegram", "email"}
    assert got["console"].status == "sent"
    for channel in ("telegram", "email"):
        assert got[channel].status in ("skipped", "failed")
        assert got[channel].error == UNSERVED[channel]
        assert await delivery_attempts(handle, channel) == 1, "a skip is never retried"


async def test_unserved_channels_are_recorded_as_skipped(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    h = with_real_notify(harness(time_skipping_env, task_queue), unserving_settings())
    result, _ = await run(h, {"notify_channels": ["telegram", "email"]})
    assert {(n.channel, n.status) for n in result.notifications} == {
        ("telegram", "skipped"),
        ("email", "skipped"),
    }


def test_the_delivery_budget_stated_beside_the_policy_is_the_real_one() -> None:
    """README "Notifications" and the comment on policies.DELIVER quote these numbers."""
    policy = policies.DELIVER
    retry = policy.retry
    assert retry.maximum_interval is not None
    waits = [
        min(
            retry.initial_interval.total_seconds() * retry.backoff_coefficient**n,
            retry.maximum_interval.total_seconds(),
        )
        for n in range(retry.maximum_attempts - 1)
    ]
    backoff = sum(waits)
    worst = backoff + retry.maximum_attempts * policy.start_to_close.total_seconds()
    assert (retry.maximum_attempts, backoff, worst) == (6, 135, 495)
    comment = inspect.getsource(policies).split("PLAN_NOTIFY = ")[1].split("DELIVER = ")[0]
    assert "135 s" in comment and "495 s" in comment, comment
