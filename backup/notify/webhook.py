"""Signed webhooks (httpx): a versioned JSON payload, HMAC-SHA256 over "timestamp.body" like
Stripe's and GitHub's, and an idempotency key per workflow run and event so a receiver can drop
redeliveries. README "Webhooks" documents the schema and the verification recipe."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from backup.errors import NotificationFailed
from backup.models import Notification
from backup.notify.render import short_text, succeeded

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Export-Backup-Signature"


def idempotency_key(n: Notification) -> str:
    return f"{n.run_id}:{n.event}"


def payload(n: Notification, link: str | None) -> dict[str, Any]:
    """Stable for a given run and event: every retry sends the same bytes."""
    return {
        "version": SCHEMA_VERSION,
        "id": idempotency_key(n),
        "event": str(n.event),
        "occurred_at": n.occurred_at.isoformat() if n.occurred_at else None,
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
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            raise NotificationFailed(f"webhook {self.url}: {type(err).__name__}: {err}") from None
        if response.is_success:
            return
        # 408 and 429 are worth another try, like 5xx; any other 4xx needs a person.
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise NotificationFailed(
            f"webhook {self.url} answered {response.status_code}", retryable=retryable
        )
