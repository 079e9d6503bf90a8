"""Secrets audit (issue 7): with every storage backend and notification channel configured, run
backups, a failing backup and restores while a thread samples every process's argv, then search
argv, all logs, deliveries, manifests and the full workflow histories for each secret.

    .venv/bin/python -m reliability.secrets_audit   # own dev stack; results/secrets_audit.json

Histories are read with `temporal workflow show --output json`, whose payloads are base64:
they are decoded before the search, or a secret inside an input or result would go unseen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from psycopg import sql
from temporalio.client import Client, WorkflowFailureError

from backup import layout
from client import connect
from devstack.ports import free_port
from devstack.stack import DevStack
from devstack.temporal import run_temporal_cli
from emulators.telegram import FakeTelegramAPI
from reliability import harness
from reliability.harness import own_stack, text_table, write_json

RESULTS = harness.RESULTS / "secrets_audit.json"
BOT_TOKEN = f"{4242}:{'AAH' + uuid.uuid4().hex}"
CHAT = -1007
SMTP_USER = "export-backup"


@dataclass
class Row:
    secret: str
    places_scanned: list[str]
    occurrences: int
    found_in: list[str] = field(default_factory=list)


class ArgvSampler(threading.Thread):
    """Reads /proc/*/cmdline of every process every `interval` seconds until stopped."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(name="argv-sampler", daemon=True)
        self.interval = interval
        self.samples = 0
        self.argv: set[str] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    raw = Path("/proc", pid, "cmdline").read_bytes()
                except OSError:  # the process ended meanwhile
                    continue
                if raw:
                    self.argv.add(raw.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)

    def saw(self, program: str) -> bool:
        return any(program in argv.split(" ", 1)[0] for argv in self.argv)


class _AuthMailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins = 0  # successful logins: proves the password was in use

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@contextmanager
def smtp_with_auth(password: str) -> Iterator[tuple[int, _AuthMailbox]]:
    """An SMTP server that demands a login (the dev stack's accepts mail without AUTH).
    Plain TCP on loopback only, hence AUTH without TLS."""
    mailbox = _AuthMailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == password.encode()
        )
        mailbox.logins += ok
        return AuthResult(success=ok, auth_data=data)

    # AUTH is offered and checked; the client logs in because SMTP_USERNAME is set.
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def decoded_history(shown: str) -> str:
    """The history JSON plus the decoded bytes of every payload in it."""
    texts = [shown]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str) and isinstance(node.get("metadata"), dict):
                with suppress(binascii.Error, ValueError):
                    texts.append(base64.b64decode(data).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shown))
    return "\n".join(texts)


@dataclass
class Audit:
    stack: DevStack
    folder: Path
    smtp_password: str = field(default_factory=lambda: "smtp-" + uuid.uuid4().hex)
    workflow_ids: list[str] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    sampler: ArgvSampler = field(default_factory=ArgvSampler)

    def secrets(self) -> dict[str, str]:
        found = {
            "database password": self.stack.postgres.password,
            "webhook secret": self.stack.webhook_secret,
            "bot token": BOT_TOKEN,
            "bot token (secret part)": BOT_TOKEN.split(":", 1)[1],
            "SMTP password": self.smtp_password,
        }
        if self.stack.s3 is not None:
            found["S3 secret key"] = self.stack.s3.secret_key
        return found

    def backends(self) -> list[str]:
        return ["local", *(["s3"] if self.stack.s3 else []), "telegram"]

    async def run(self) -> None:
        client = await connect(self.stack.temporal.address, "default")
        with (
            FakeTelegramAPI(BOT_TOKEN, {CHAT}) as telegram,
            smtp_with_auth(self.smtp_password) as (smtp_port, mailbox),
        ):
            self.telegram, self.mailbox = telegram, mailbox
            self.sampler.start()
            try:
                for backend in self.backends():
                    await self._backend_runs(client, backend, smtp_port)
            finally:
                self.sampler.stop()
            # Messages, captions and the documents' bytes (manifests are JSON).
            self.telegram_texts = [str(m) for m in telegram.sent_messages.values()] + [
                f"{d.caption} {d.data.decode(errors='replace')}"
                for d in telegram.documents.values()
            ]

    async def _backend_runs(self, client: Client, backend: str, smtp_port: int) -> None:
        """On a worker of its own: a verified backup, a failing one, a restore of the backup."""
        queue = f"audit-{backend}"
        log = self.folder / f"worker-{backend}.log"
        self.worker_logs.append(log)
        overrides = {
            "TEMPORAL_TASK_QUEUE": queue,
            "HOST_ID": f"{queue}-host",
            "METRICS_PORT": "0",
            "SPOOL_DIR": str(self.folder / f"spool-{backend}"),
            "STORAGE_BACKEND": backend,
            "NOTIFY_CHANNELS": "console,email,webhook,telegram",
            "SMTP_PORT": str(smtp_port),
            "SMTP_USERNAME": SMTP_USER,
            "SMTP_PASSWORD": self.smtp_password,
            "SMTP_STARTTLS": "false",
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_CHAT_ID": str(CHAT),
            "TELEGRAM_API_URL": self.telegram.base_url,
            "TELEGRAM_PART_BYTES": str(256 * 1024),
        }
        worker = self.stack.spawn_worker(log, overrides)
        try:
            result = await self._run(
                client,
                "ExportBackupWorkflow",
                queue,
                {"project_id": "umbrella", "verify_restore": True},
            )
            self.results.append(result)
            try:
                await self._run(client, "ExportBackupWorkflow", queue, {"project_id": "initech"})
            except WorkflowFailureError as err:
                self.results.append({"failed": str(err.cause)})
            into = f"audit_restore_{backend}"
            restored = await self._run(
                client,
                "RestoreBackupWorkflow",
                queue,
                {"location": result["location"], "into_schema": into},
            )
            self.results.append(restored)
            self._drop_schema(into)
        finally:
            worker.terminate()
            worker.wait(timeout=90)

    async def _run(self, client: Client, workflow: str, queue: str, body: Any) -> Any:
        workflow_id = f"secrets-audit-{uuid.uuid4().hex[:12]}"
        self.workflow_ids.append(workflow_id)
        handle = await client.start_workflow(workflow, body, id=workflow_id, task_queue=queue)
        return await asyncio.wait_for(handle.result(), timeout=300)

    def _drop_schema(self, schema: str) -> None:
        with psycopg.connect(self.stack.postgres.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def places(self) -> dict[str, str]:
        """Every place a secret must not be, by name, and its text."""
        stack = self.stack
        places = {
            f"process argv (/proc/*/cmdline, {self.sampler.samples} samples every 50 ms, "
            f"{len(self.sampler.argv)} distinct)": "\n".join(sorted(self.sampler.argv)),
        }
        logs = [
            *self.worker_logs,
            stack.worker_log,
            stack.temporal.log_file,
            stack.postgres.log_file,
            *([stack.s3.log_file] if stack.s3 else []),
        ]
        for path in logs:
            places[f"log {path.name} ({path.parent.name})"] = _read(path)
        for workflow_id in self.workflow_ids:
            shown = run_temporal_cli(
                stack.temporal.address,
                *("workflow", "show", "--workflow-id", workflow_id, "--output", "json"),
                check=True,
            ).stdout
            places[f"history {workflow_id} (payloads decoded)"] = decoded_history(shown)
        places["workflow results"] = json.dumps(self.results, default=str)
        places["webhook deliveries"] = "\n".join(
            repr(d) for d in (stack.webhooks.deliveries if stack.webhooks else [])
        )
        places["emails"] = "\n".join(m.decode(errors="replace") for m in self.mailbox.messages)
        places["Telegram messages and documents"] = "\n".join(self.telegram_texts)
        manifests = sorted(stack.home.glob(f"storage/**/*{layout.MANIFEST_SUFFIX}"))
        places[f"stored manifests ({len(manifests)})"] = "\n".join(_read(p) for p in manifests)
        return places

    def unused(self) -> list[str]:
        """Why the audit would prove nothing: a secret that was never put to use."""
        problems = []
        for result in self.results:
            failed = [n for n in result.get("notifications", []) if n["status"] != "sent"]
            if failed:
                problems.append(f"notifications not sent: {failed}")
        if not self.mailbox.logins:
            problems.append("no SMTP login")
        if not self.telegram.sent_messages:
            problems.append("no Telegram message")
        if not self.sampler.saw("pg_dump"):
            problems.append("the argv sampler never saw pg_dump")
        return problems

    def rows(self) -> list[Row]:
        places = self.places()
        rows = []
        for name, value in self.secrets().items():
            forms = {value, quote(value, safe="")}
            found = [place for place, text in places.items() if any(f in text for f in forms)]
            count = sum(text.count(f) for text in places.values() for f in forms)
            rows.append(Row(name, list(places), count, found))
        return rows


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="secrets-audit-") as home:
        stack = own_stack(Path(home, "stack"))
        with stack:
            audit = Audit(stack, Path(home))
            started = time.monotonic()
            asyncio.run(audit.run())
            rows = audit.rows()
    for problem in audit.unused():
        print(f"WARNING: {problem}")
    print(text_table(rows, ["secret", "occurrences", "found_in"]))
    print(
        f"places scanned: {len(rows[0].places_scanned)}; pg_dump seen in argv: "
        f"{audit.sampler.saw('pg_dump')}; {time.monotonic() - started:.0f} s"
    )
    write_json(rows, RESULTS)
    return 0 if all(r.occurrences == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
