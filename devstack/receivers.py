"""Real servers that receive notifications, for the dev stack and the tests: SMTP via aiosmtpd,
and an HTTP endpoint that records webhook deliveries, checks their signature, and answers what a
test scripts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from backup.notify.webhook import SIGNATURE_HEADER
from devstack.ports import free_port


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (README "Webhooks"): recompute the HMAC over "t.body", compare in
    constant time, and refuse stale timestamps (replays)."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields.get("v1", ""))


class _Mailbox:
    def __init__(self, maildir: Path | None) -> None:
        self.messages: list[EmailMessage] = []
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
            (self.maildir / f"{len(self.messages):04d}.eml").write_bytes(envelope.content)
        return "250 OK"


@contextmanager
def smtp_server(maildir: Path | None = None) -> Iterator[tuple[int, list[EmailMessage]]]:
    """A real SMTP server on 127.0.0.1; yields its port and the messages it accepted (also
    written to `maildir` as .eml files when given)."""
    mailbox = _Mailbox(maildir)
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox.messages
    finally:
        controller.stop()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None = None  # signature checked against the receiver's secret, if any


@dataclass
class WebhookReceiver:
    """Records every POST; answers with the scripted statuses first, then 200."""

    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    secret: str | None = None
    log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/backups"


@contextmanager
def webhook_receiver(
    statuses: list[int] | None = None, secret: str | None = None, log_file: Path | None = None
) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses=list(statuses or []), secret=secret, log_file=log_file)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            delivery = Delivery(self.path, dict(self.headers.items()), body)
            if receiver.secret:
                signature = self.headers.get(SIGNATURE_HEADER, "")
                delivery.verified = verify_signature(receiver.secret, signature, body)
            receiver.deliveries.append(delivery)
            if receiver.log_file is not None:
                record = {"verified": delivery.verified, "payload": json.loads(body or b"null")}
                with receiver.log_file.open("a") as log:
                    log.write(json.dumps(record) + "\n")
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
