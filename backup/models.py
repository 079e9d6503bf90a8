"""Pydantic models at every boundary: workflow input/result and what activities exchange.

The workflow input is the public contract (docs/contract.md): keep it backwards compatible.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from backup.dependency_models import Dependencies
from backup.layout import short_run_id  # noqa: F401  (callers import it from here too)
from backup.retention import RetentionOutcome

# Letters, digits, `_`, `-` and `.` (not first): safe in storage keys, file names and workflow ids.
PROJECT_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
ProjectId = Annotated[str, StringConstraints(pattern=PROJECT_ID_PATTERN)]


ChannelName = Literal["console", "email", "webhook", "telegram"]


class DumpFormat(StrEnum):
    CUSTOM = "custom"
    SQL = "sql"
    TAR = "tar"
    DIRECTORY = "directory"


class Compression(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


def export_workflow_id(project_id: str, request_id: str) -> str:
    """The contract's workflow id: the server's id uniqueness is what makes a start idempotent."""
    return f"export-backup-{project_id}-{request_id}"


class ExportRequest(BaseModel):
    """Input of ExportBackupWorkflow: one JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: ProjectId
    format: DumpFormat = DumpFormat.CUSTOM
    compress: bool = True
    # Only consulted when compress is true; zstd is fast and as small as pg_dump -Fc's gzip.
    compression: Compression = Compression.ZSTD
    notify_email: EmailStr | None = None
    # Only these of the deployment's channels (NOTIFY_CHANNELS); None = all of them.
    notify_channels: list[ChannelName] | None = None
    # Idempotency: the same request_id maps to the same workflow id (export_workflow_id), and the
    # workflow refuses a request_id started under another id, where it would deduplicate nothing.
    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    # Restore the artifact into a scratch database and compare tables and row counts with the
    # manifest before uploading; a mismatch fails the backup.
    verify_restore: bool = False

    @property
    def effective_compression(self) -> Compression:
        return self.compression if self.compress else Compression.NONE


def _schema_name(name: str) -> str:
    """Refuse here what PostgreSQL would refuse (after retries) or silently change."""
    size = len(name.encode())
    if size > 63:  # PostgreSQL truncates longer names, so the schema would get another name
        raise ValueError(f"a schema name is at most 63 bytes in UTF-8, this one has {size}")
    if name.startswith("pg_"):
        raise ValueError('the prefix "pg_" is reserved for PostgreSQL\'s system schemas')
    if "\x00" in name:
        raise ValueError("a schema name can not contain NUL characters")
    return name


SchemaName = Annotated[str, StringConstraints(min_length=1), AfterValidator(_schema_name)]


class RestoreRequest(BaseModel):
    """Input of RestoreBackupWorkflow: restore a backup beside the original (`into_schema`), or
    replace the project's schema (`replace` + `confirm_replace`, after a safety backup)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    location: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    # The new schema: a name PostgreSQL takes as it is.
    into_schema: SchemaName | None = None
    # Another database on the same server; None = the platform database.
    database: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,63}$")] | None = None
    replace: bool = False
    confirm_replace: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> RestoreRequest:
        if self.replace and (self.into_schema or self.database):
            raise ValueError(
                "replace puts the backup in place of the project's own schema: it takes neither"
                " into_schema nor database"
            )
        if self.replace and not self.confirm_replace:
            raise ValueError(
                "replace swaps the project's live schema for the backup (after a safety backup);"
                " set confirm_replace to true to go on"
            )
        if not self.replace and not self.into_schema:
            raise ValueError(
                "into_schema is required: the new schema to restore into (or replace with"
                " confirm_replace to overwrite the project's schema)"
            )
        return self


class RestoreResult(BaseModel):
    location: str
    schema_name: str
    database: str | None
    table_count: int
    row_counts: dict[str, int]
    # Restored row counts equal the manifest's (counted in the dump's own snapshot).
    verified: bool
    started_at: datetime
    finished_at: datetime
    project_id: str | None = None  # of the backup, from its verified manifest
    source_schema: str | None = None  # the schema the backup was taken of
    # Replace mode: where the safety backup of the replaced schema is, and the name the
    # replaced schema was kept under in the database.
    safety_backup_location: str | None = None
    previous_schema: str | None = None
    large_objects: int = 0  # restored with the content of the backup, every reference resolved
    notes: list[str] = Field(default_factory=list)  # e.g. a function's search_path repointed
    # What a renamed copy could not fix (a function body naming the original schema): check.
    warnings: list[str] = Field(default_factory=list)


class RestoreCheck(BaseModel):
    """Verdict of a test restore: the artifact restored into a scratch database and compared,
    table by table, with the manifest's exact row counts."""

    verified: bool
    tables_expected: int
    tables_restored: int
    mismatches: list[str] = Field(default_factory=list)
    error: str | None = None  # the restore itself failed
    seconds: float
    # Foreign keys into tables outside the backup: a scratch database has none of their rows.
    not_validated: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # e.g. an extension version not available
    large_objects: int = 0  # restored, every reference resolved, content as in the backup

    def describe(self) -> str:
        if self.verified:
            lo = f", {self.large_objects} large objects" if self.large_objects else ""
            fks = f"; not validated: {'; '.join(self.not_validated)}" if self.not_validated else ""
            return (
                f"test restore verified {self.tables_restored} tables and their row counts{lo}"
                + fks
            )
        problems = [self.error] if self.error else self.mismatches[:10]
        return "test restore does not match the manifest: " + "; ".join(p for p in problems if p)


class Project(BaseModel):
    """A validated, active project and the schema that holds its data."""

    project_id: str
    name: str
    schema_name: str
    # Decided by the validating worker (SMALL_SCHEMA_MAX_BYTES), so a replay never depends on a
    # worker's settings: the schema is small enough for the one-step backup (back_up_small_schema).
    small: bool = False


class DumpSpec(BaseModel):
    """What the dump activity needs; built by the workflow from the request and the project."""

    project: Project
    format: DumpFormat
    compression: Compression
    # Spool directory name for this run: one per workflow run, so retries overwrite, never pile up.
    run_key: str
    # Storage key stem, e.g. backups/acme/20261126T120000Z-1a2b3c4d (extension added per format).
    key_stem: str


class DumpedArtifact(BaseModel):
    """The artifact and its manifest in the spool of the host that dumped it."""

    host_queue: str
    artifact_path: str
    manifest_path: str
    file_name: str
    size_bytes: int
    raw_bytes: int
    sha256: str
    table_count: int
    dump_seconds: float
    # What the artifact really holds: a directory dump asked for zstd is gzip inside when the
    # pg_dump build has no zstd. None in histories recorded before it was reported.
    compression: Compression | None = None
    # What the schema needs from outside itself (without the definitions' SQL).
    dependencies: Dependencies | None = None


class StoredArtifact(BaseModel):
    location: str
    manifest_location: str
    upload_seconds: float


class SmallBackup(BaseModel):
    """What back_up_small_schema did: the artifact it dumped and where it stored it."""

    artifact: DumpedArtifact
    stored: StoredArtifact


# One input model per activity (issue 14). The activities named *_v2 take these; the older
# multi-argument names stay registered for the histories and runs that scheduled them.


class StoreRequest(BaseModel):
    """Input of store_artifact: verify the spooled artifact, upload it under `key_stem`, then
    remove the run's spool (`run_key`) on this host."""

    artifact: DumpedArtifact
    key_stem: str
    run_key: str


class VerifyRestoreRequest(BaseModel):
    """Input of verify_restore_v2: test-restore `artifact` into the scratch database of
    `run_key`."""

    artifact: DumpedArtifact
    run_key: str


class CleanupRequest(BaseModel):
    """Input of cleanup_spool_v2: the run's spool, scratch database and, with `key_stem`, its
    unfinished uploads."""

    run_key: str
    key_stem: str | None = None


class Step(StrEnum):
    """Steps as shown in the BackupStep search attribute and the progress query."""

    VALIDATING = "validating"
    DUMPING = "dumping"
    VERIFYING = "verifying"
    TEST_RESTORING = "test_restoring"
    UPLOADING = "uploading"
    CLEANING_UP = "cleaning_up"
    PRUNING = "pruning"
    NOTIFYING = "notifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # RestoreBackupWorkflow's own steps (it ends with COMPLETED too).
    RESTORING = "restoring"
    SAFETY_BACKUP = "safety_backup"
    REPLACING = "replacing"


class BackupEvent(StrEnum):
    SUCCEEDED = "backup.succeeded"
    FAILED = "backup.failed"


class Notification(BaseModel):
    """What every notification channel receives. Contains no secrets."""

    event: BackupEvent
    project_id: str
    workflow_id: str
    run_id: str
    notify_email: str | None = None
    notify_channels: list[ChannelName] | None = None
    occurred_at: datetime | None = None  # fixed by the workflow: identical on every retry
    location: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    table_count: int | None = None
    format: DumpFormat | None = None
    duration_seconds: float | None = None
    failed_step: Step | None = None
    error: str | None = None


class Delivery(BaseModel):
    """Input of deliver_notification_v2: one notification on one channel."""

    channel: str
    notification: Notification


class NotificationOutcome(BaseModel):
    channel: str
    status: str  # "sent" | "failed" | "skipped" (the deployment can not serve it; error says why)
    error: str | None = None


class Progress(BaseModel):
    """Answer of the `progress` query; live byte counts are in the pending activity's heartbeat."""

    project_id: str
    step: Step
    host_queue: str | None = None
    host_attempt: int = 0
    bytes_dumped: int | None = None
    size_bytes: int | None = None
    location: str | None = None
    error: str | None = None


class ExportResult(BaseModel):
    """Result of ExportBackupWorkflow (docs/contract.md)."""

    project_id: str
    schema_name: str
    location: str
    manifest_location: str
    size_bytes: int
    raw_bytes: int
    sha256: str
    table_count: int
    format: DumpFormat
    compression: Compression
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    workflow_id: str
    run_id: str
    notifications: list[NotificationOutcome] = Field(default_factory=list)
    verification: RestoreCheck | None = None  # set when verify_restore was asked
    retention: RetentionOutcome | None = None  # what retention kept and pruned after this backup
    dependencies: Dependencies | None = None  # outside the schema, as the manifest records them
