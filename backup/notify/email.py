"""Email over SMTP (aiosmtplib): a multipart text + HTML message."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from backup.errors import ConfigurationError, NotificationFailed
from backup.models import Notification
from backup.notify.render import html_body, subject, text_body


class EmailChannel:
    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        tls: bool = False,
        timeout: float = 30.0,
        default_recipient: str | None = None,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self.starttls, self.tls, self.timeout = starttls, tls, timeout
        self.default_recipient = default_recipient

    def recipient(self, n: Notification) -> str | None:
        return n.notify_email or self.default_recipient

    def message(self, n: Notification, link: str | None) -> EmailMessage:
        to = self.recipient(n)
        if to is None:
            raise ConfigurationError("no recipient: pass notify_email or set NOTIFY_EMAIL_DEFAULT")
        msg = EmailMessage()
        msg["Subject"] = subject(n)
        msg["From"] = self.sender
        msg["To"] = to
        # The same on every retry of this run's event: a redelivered email (a crash after the
        # server accepted it) is recognisable as a duplicate, as webhooks are by Idempotency-Key.
        msg["Message-ID"] = f"<{n.run_id}.{n.event}@export-backup>"
        # Lets mail clients thread the messages of one backup; retries carry the same value.
        msg["X-Export-Backup-Id"] = f"{n.run_id}:{n.event}"
        msg.set_content(text_body(n, link))
        msg.add_alternative(html_body(n, link), subtype="html")
        return msg

    async def send(self, notification: Notification, link: str | None = None) -> None:
        message = self.message(notification, link)
        failure = await self._send(message)
        # Raised outside any except block: aiosmtplib's error (a server may echo what it was
        # sent) must not ride along as the cause or context.
        if failure is not None:
            raise failure

    async def _send(self, message: EmailMessage) -> NotificationFailed | None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self.starttls and not self.tls,
                use_tls=self.tls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as err:
            return NotificationFailed(
                f"SMTP server {self.host} refused the login of {self._username!r}: fix "
                f"SMTP_USERNAME / SMTP_PASSWORD ({err.code})",
                retryable=False,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            return NotificationFailed(
                self._redact(f"SMTP server {self.host} refused recipient {message['To']}: {err}"),
                retryable=False,
            )
        except (aiosmtplib.SMTPException, OSError) as err:
            return NotificationFailed(self._redact(f"SMTP {self.host}:{self.port}: {err}"))
        return None

    def _redact(self, text: str) -> str:
        """Server replies are quoted in errors; one that echoes the password must not leak it."""
        return text.replace(self._password, "<SMTP_PASSWORD>") if self._password else text
