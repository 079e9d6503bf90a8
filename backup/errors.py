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


class StorageError(BackupError):
    """Transient by default (timeouts, 5xx); `retryable=False` for what only a person can fix
    (missing bucket, rejected credentials, a location that does not exist)."""

    retryable = True


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


class MissingDependency(BackupError):
    """The restore target lacks an extension or object the backup needs: a person installs it
    (the message says what to run), or enables RESTORE_CREATE_EXTENSIONS for extensions."""
