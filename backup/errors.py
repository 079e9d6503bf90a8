"""Errors the domain raises. Their class name becomes the Temporal ApplicationError type, so
retry policies and the Web UI can tell them apart; messages name the thing that is wrong and
what to do about it, and never contain secrets."""

from __future__ import annotations


class BackupError(Exception):
    """Base class. `retryable` tells the activity layer how to map it: each class has a
    default, and a raise site may override it for what only a person can fix."""

    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class InvalidRequest(BackupError):
    pass


class ProjectNotFound(BackupError):
    pass


class ProjectInactive(BackupError):
    pass


class SchemaNotFound(BackupError):
    pass


class BackupTooLarge(BackupError):
    pass


class DumpFailed(BackupError):
    """pg_dump exited non-zero: often transient (connection reset, server restart)."""

    retryable = True


class ArtifactCorrupted(BackupError):
    """The spool file does not match what the dump recorded: the dump must be redone."""


class DatabaseUnavailable(BackupError):
    """The database refused or dropped the connection (psycopg's OperationalError): it may be
    restarting, so retry."""

    retryable = True


class StorageError(BackupError):
    """Transient by default (timeouts, 5xx); `retryable=False` for what only a person can fix
    (missing bucket, rejected credentials, a location that does not exist)."""

    retryable = True


class ListingNotSupported(StorageError):
    """The backend can not list what it stored (Telegram), so retention can not be applied."""

    retryable = False


class UnknownFile(StorageError):
    """Telegram does not know a file id (wrong location, or the message was deleted)."""

    retryable = False


class NotificationFailed(BackupError):
    """A channel could not deliver: transient by default (server down, 5xx), permanent for
    what only a person can fix (rejected login, 4xx)."""

    retryable = True


class ConfigurationError(BackupError):
    pass


class SpoolFull(BackupError):
    """The spool disk can not hold the dump: a person must free or grow SPOOL_DIR."""


class IntegrityError(BackupError):
    """A downloaded artifact does not match its manifest: refuse to use it."""


class EncryptionFailed(BackupError):
    """The encryption library failed mid-stream; nothing was stored."""


class ToolFailed(BackupError):
    """pg_restore or psql exited non-zero; the message holds the tail of its stderr."""


class RestoreFailed(BackupError):
    """A restore did not give back the backup (a tool failed, rows or large objects differ, a
    replace was refused): what it created is dropped, the live schema is untouched."""


class SchemaExists(BackupError):
    """The schema a restore would create is already there: pick another name or drop it."""


class Stopped(BackupError):
    """Another table's load failed: this one stops too (never outlives the restore)."""


# Types that are raised as ApplicationError by a workflow or an activity rather than as one of
# the classes above; defined here so their names live in one place.


class BackupFailed(BackupError):
    """How a failed ExportBackupWorkflow ends: the message names the step and the cause, the
    details carry `failed_step` and `error_type` (the root error's type)."""


class RestoreVerificationFailed(BackupError):
    """The test restore (`verify_restore`) did not give back the manifest's tables and rows;
    nothing was uploaded."""


class NotificationSkipped(BackupError):
    """A channel the run asked for that the deployment can not serve (not configured, no
    recipient): recorded as skipped, never retried."""


class MissingDependency(BackupError):
    """The restore target lacks an extension or object the backup needs: a person installs it
    (the message says what to run), or enables RESTORE_CREATE_EXTENSIONS for extensions."""


def error_type(error: type[BackupError]) -> str:
    """The ApplicationError type an error class travels as (its name): compare with this,
    never with a string literal."""
    return error.__name__


def _defined(base: type[BackupError]) -> list[type[BackupError]]:
    """Every class below `base`, depth first, in the order they are defined."""
    return [c for sub in base.__subclasses__() for c in (sub, *_defined(sub))]


# What no retry can fix, for RetryPolicy.non_retryable_error_types: every class here whose own
# `retryable` is False (the activity layer already marks each raise non-retryable from it; the
# list also stops retries of these types raised as ApplicationError by a workflow). Retryable
# classes (DumpFailed, DatabaseUnavailable, StorageError, NotificationFailed) are absent: a raise
# site marks their permanent cases with retryable=False.
PERMANENT: tuple[str, ...] = tuple(
    error_type(cls)
    for cls in _defined(BackupError)
    if cls.__module__ == __name__ and not cls.retryable
)
