"""No notification error names a secret: not the path or query of WEBHOOK_URL (a Slack incoming
webhook's path is its credential), not the bot token, not the SMTP password. Checked in the
message, in every exception of the cause/context chain and in the traceback a worker would log,
since all of them reach workflow history or logs."""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from backup.errors import NotificationFailed
from backup.notify import open_channel
from backup.settings import Settings
from devstack.ports import free_port
from devstack.receivers import webhook_receiver
from tests.notifications import LINK, failed, succeeded

SLACK_PATH = "/services/T0SECRET1/B0SECRET2/hUnTeR2xYzSecretPath"
QUERY_TOKEN = "qs-token-hunter3"
SECRETS = ("T0SECRET1", "hUnTeR2xYzSecretPath", QUERY_TOKEN)
BOT_TOKEN = "4242:bot-token-never-shown"
SMTP_PASSWORD = "smtp-password-never-shown"


def everything_said(err: BaseException) -> str:
    """Message, repr and args of every exception reachable by __cause__ or __context__, and the
    formatted traceback (what a worker's log would show)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    said = [f"{e!s} {e!r} {e.args!r}" for e in seen]
    return "\n".join([*said, *traceback.format_exception(err)])


def assert_no_secret(err: BaseException, secrets: tuple[str, ...]) -> None:
    said = everything_said(err)
    for secret in secrets:
        assert secret not in said, f"{secret!r} leaked:\n{said}"


def webhook(url: str) -> Settings:
    return Settings(
        notify_channels="webhook",
        webhook_url=url,
        webhook_secret="whsec-x",  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("status", [404, 500])
async def test_webhook_http_errors_name_only_the_origin(status: int) -> None:
    with webhook_receiver(statuses=[status]) as receiver:
        origin = f"http://127.0.0.1:{receiver.port}"
        settings = webhook(f"{origin}{SLACK_PATH}?token={QUERY_TOKEN}")
        with pytest.raises(NotificationFailed) as caught:
            await open_channel("webhook", settings).send(succeeded(), LINK)
        [delivery] = receiver.deliveries
    assert delivery.path == f"{SLACK_PATH}?token={QUERY_TOKEN}", "the real URL was used"
    assert str(caught.value) == f"webhook {origin} answered {status}"
    assert_no_secret(caught.value, SECRETS)


async def test_webhook_connection_refused_names_only_the_origin() -> None:
    port = free_port()  # nothing listens there
    url = f"http://user:{QUERY_TOKEN}@127.0.0.1:{port}{SLACK_PATH}?token={QUERY_TOKEN}"
    with pytest.raises(NotificationFailed) as caught:
        await open_channel("webhook", webhook(url)).send(failed(), LINK)
    assert str(caught.value).startswith(f"webhook http://127.0.0.1:{port}: ConnectError")
    assert caught.value.retryable
    assert_no_secret(caught.value, SECRETS)


@pytest.mark.parametrize("port", ["99999", "http"])
async def test_webhook_unusable_url_is_permanent_and_not_echoed(port: str) -> None:
    url = f"http://127.0.0.1:{port}{SLACK_PATH}?token={QUERY_TOKEN}"
    with pytest.raises(NotificationFailed) as caught:
        await open_channel("webhook", webhook(url)).send(failed(), LINK)
    assert not caught.value.retryable and "check WEBHOOK_URL" in str(caught.value)
    assert_no_secret(caught.value, SECRETS)


@pytest.mark.parametrize("status", [404, 500, None])
async def test_webhook_errors_in_the_activity_result_hold_no_secret(status: int | None) -> None:
    """What the workflow records (the ApplicationError and its cause) is equally clean."""
    with webhook_receiver(statuses=[status or 200]) as receiver:
        port = receiver.port if status else free_port()
        settings = webhook(f"http://127.0.0.1:{port}{SLACK_PATH}?token={QUERY_TOKEN}")
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(
                NotifyActivities(settings).deliver_notification, "webhook", succeeded()
            )
    assert caught.value.type == "NotificationFailed"
    assert f"127.0.0.1:{port}" in caught.value.message
    assert_no_secret(caught.value, SECRETS)


@contextmanager
def echoing_api(status: int) -> Iterator[str]:
    """A Bot API that quotes the request path (with the token) in its error description."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"ok": False, "description": f"no route {self.path}"}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def telegram(api_url: str) -> Settings:
    return Settings(
        telegram_bot_token=BOT_TOKEN,  # type: ignore[arg-type]
        telegram_chat_id="-100",
        telegram_api_url=api_url,
    )


@pytest.mark.parametrize("status", [404, 502])
async def test_telegram_error_descriptions_are_redacted(status: int) -> None:
    with echoing_api(status) as api_url, pytest.raises(NotificationFailed) as caught:
        await open_channel("telegram", telegram(api_url)).send(failed(), LINK)
    assert "<TELEGRAM_BOT_TOKEN>" in str(caught.value)
    assert_no_secret(caught.value, (BOT_TOKEN, "bot-token-never-shown"))


async def test_telegram_unreachable_api_leaks_no_token() -> None:
    settings = telegram(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotificationFailed) as caught:
        await open_channel("telegram", settings).send(failed(), LINK)
    assert caught.value.retryable
    assert_no_secret(caught.value, (BOT_TOKEN, "bot-token-never-shown"))


def smtp(port: int) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_username="backups",
        smtp_password=SMTP_PASSWORD,  # type: ignore[arg-type]
    )


def echo_password_back(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    """A server that quotes the credentials it refused (some do, in their 535 text)."""
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 refused {data.password}")


async def test_smtp_refused_login_does_not_carry_the_echoed_password() -> None:
    controller = Controller(
        object(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=echo_password_back,
        auth_require_tls=False,
    )
    controller.start()
    try:
        with pytest.raises(NotificationFailed) as caught:
            await open_channel("email", smtp(controller.port)).send(succeeded(), LINK)
    finally:
        controller.stop()
    assert not caught.value.retryable and "SMTP_PASSWORD" in str(caught.value)
    assert_no_secret(caught.value, (SMTP_PASSWORD,))


async def test_smtp_down_leaks_nothing_in_the_cause_chain() -> None:
    with pytest.raises(NotificationFailed) as caught:
        await open_channel("email", smtp(free_port())).send(succeeded(), LINK)
    assert caught.value.retryable and caught.value.__context__ is None
    assert_no_secret(caught.value, (SMTP_PASSWORD,))
