"""Signed webhooks (httpx): a versioned JSON payload, HMAC-SHA256 over "timestamp.body" like
Stripe's and GitHub's, and an idempotency key per workflow run and event so a receiver can drop
redeliveries. docs/notifications.md "Webhooks" documents the schema and the verification recipe."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from backup.errors import NotificationFailed
from backup.models import Notification
from backup.notify.render import short_text, succeeded

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Export-Backup-Signature"


def idempotency_key(n: Notification) -> str:
    return f"{n.run_id}:{n.event}"


def timestamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with exactly three fractional digits ("2026-11-26T13:16:46.600Z"):
    one width whatever the clock said, so receivers can parse and compare it as text."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def origin(url: str) -> str:
    """What an error may name of WEBHOOK_URL: scheme://host[:port]. The path and query of a
    Slack-style incoming webhook are its credential, and so is any user:password@."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: it stays out of the message like the rest
        port = ""
    return f"{parts.scheme}://{host}{port}"


def payload(n: Notification, link: str | None) -> dict[str, Any]:
    """Stable for a given run and event: every retry sends the same bytes."""
    return {
        "version": SCHEMA_VERSION,
        "id": idempotency_key(n),
        "event": str(n.event),
        "occurred_at": timestamp(n.occurred_at),
        "project_id": n.project_id,
        "workflow": {"id": n.workflow_id, "run_id": n.run_id, "url": link},
        "backup": {
            "location": n.location,
            "size_bytes": n.size_bytes,
            "sha256": n.sha256,
            "table_count": n.table_count,
            "format": str(n.format) if n.format else None,
            "duration_seconds": n.duration_seconds,
        }
        if succeeded(n)
        else None,
        "failure": None
        if succeeded(n)
        else {"step": str(n.failed_step), "error": n.error, "duration_seconds": n.duration_seconds},
        # Slack-compatible: an incoming webhook shows this line as the message.
        "text": short_text(n, link),
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str | None, timeout: float = 15.0) -> None:
        self.url = url
        self._secret = secret
        self.timeout = timeout

    async def send(self, notification: Notification, link: str | None = None) -> None:
        body = json.dumps(payload(notification, link), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "export-backup-webhook/1",
            "X-Export-Backup-Event": str(notification.event),
            "Idempotency-Key": idempotency_key(notification),
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, int(time.time()), body)
        failure = await self._post(body, headers)
        # Raised here, outside any except block, so no library error (whose message or request
        # may hold the full URL) rides along as the cause or context.
        if failure is not None:
            raise failure

    async def _post(self, body: bytes, headers: dict[str, str]) -> NotificationFailed | None:
        where = f"webhook {origin(self.url)}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as err:  # network, TLS, timeouts: worth another try
            return NotificationFailed(f"{where}: {type(err).__name__}: {self._redact(str(err))}")
        except Exception as err:  # a URL httpx cannot use (InvalidURL, OverflowError): fix it
            return NotificationFailed(
                f"{where}: {type(err).__name__}: {self._redact(str(err))}: check WEBHOOK_URL",
                retryable=False,
            )
        if response.is_success:
            return None
        # 408 and 429 are worth another try, like 5xx; any other 4xx needs a person.
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        return NotificationFailed(f"{where} answered {response.status_code}", retryable=retryable)

    def _redact(self, text: str) -> str:
        """httpx names the URL in some errors (an invalid URL, an unsupported scheme)."""
        parts = urlsplit(self.url)
        for secret in (self.url, f"{parts.path}?{parts.query}", parts.path, parts.query):
            if len(secret) > 1:
                text = text.replace(secret, "<redacted>")
        return text
